from django.urls import path

from campaigns.ugc.views import featured_view

app_name = "ugc"

urlpatterns = [path("featured/", featured_view, name="featured")]
