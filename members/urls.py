from django.urls import path

from members import views

app_name = "members"

urlpatterns = [
    path("layers/", views.layers_dashboard, name="layers_dashboard"),
]
