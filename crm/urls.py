from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("i18n/", include("django.conf.urls.i18n")),
    path("staff/members/", include("members.urls")),
    path("staff/ugc/", include("campaigns.ugc.urls")),
    path("staff/campaigns/", include("campaigns.urls")),
    path("staff/health/", include("crm.health.urls")),
    path("staff/desk/", include("crm.desk.urls")),
    path("honors/", include("loyalty.urls")),
    path("admin/", admin.site.urls),
    path("api/", include("crm.api.urls")),
]

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
