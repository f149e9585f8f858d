from django.urls import path

from loyalty.views import honor_roll_view

app_name = "loyalty"

urlpatterns = [path("", honor_roll_view, name="honor_roll")]
