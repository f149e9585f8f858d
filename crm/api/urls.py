"""The partner REST API: /api/v1/ (endpoints), /api/schema/ (OpenAPI 3), /api/docs/ and /api/redoc/."""

from django.conf import settings
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from crm.api.receipts import DeliveryReceiptApi

app_name = "api"

v1 = [
    path("", include("members.api.urls")),
    path("", include("loyalty.api.urls")),
    path("", include("campaigns.ugc.api.urls")),
    path("deliveries/receipts/<slug:channel>/", DeliveryReceiptApi.as_view(), name="deliveries-receipt"),
]

urlpatterns = [
    path("v1/", include(v1)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="swagger-ui"),
    # Our template drops the Google Fonts links of drf-spectacular's: no asset from outside.
    path(
        "redoc/",
        SpectacularRedocView.as_view(url_name="api:schema", template_name="crm/api/redoc.html"),
        name="redoc",
    ),
]

if settings.CRM_API_BENCH_VIEWS:
    from crm.api.views import BenchMemberDrfApi, bench_ping

    urlpatterns.append(path("bench/ping/", bench_ping, name="bench-ping"))
    urlpatterns.append(
        path("bench/members-drf/<str:external_id>/", BenchMemberDrfApi.as_view(), name="bench-members-drf")
    )
