from django.urls import path

from members.api.complaints import ComplaintCreateApi
from members.api.events import EventBatchIngestApi
from members.api.views import MemberDetailApi, MemberListApi, MemberUpsertApi

urlpatterns = [
    path("members/", MemberListApi.as_view(), name="members-list"),
    # Before the detail route: a member numbered "upsert" cannot be read through the API.
    path("members/upsert/", MemberUpsertApi.as_view(), name="members-upsert"),
    path("members/<str:external_id>/", MemberDetailApi.as_view(), name="members-detail"),
    path("events/batch/", EventBatchIngestApi.as_view(), name="events-batch"),
    path("complaints/", ComplaintCreateApi.as_view(), name="complaints-create"),
]
