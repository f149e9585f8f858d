from django.urls import path

from crm.health import views

app_name = "health"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("alarms/<int:alarm_id>/acknowledge/", views.alarm_acknowledge_view, name="alarm_acknowledge"),
    path("alarms/<int:alarm_id>/resolve/", views.alarm_resolve_view, name="alarm_resolve"),
    path("tasks/<int:task_id>/close/", views.task_close_view, name="task_close"),
]
