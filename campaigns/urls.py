from django.urls import path

from campaigns import views

app_name = "campaigns"

urlpatterns = [
    path("recall/", views.recall_report, name="recall_report"),
]
