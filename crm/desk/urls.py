from django.urls import path

from crm.desk import views

app_name = "desk"

urlpatterns = [
    path("", views.board, name="board"),
    path("board.json", views.board_data, name="board_data"),
    path("new/", views.ticket_new, name="ticket_new"),
    path("reports/", views.reports, name="reports"),
    path("tickets/<int:ticket_id>/", views.ticket_detail, name="ticket"),
    path("tickets/<int:ticket_id>.json", views.ticket_data, name="ticket_data"),
    path("tickets/<int:ticket_id>/<slug:action>/", views.ticket_action, name="ticket_action"),
]
