"""Complaints reported by partners (the shop's service desk, the WeCom bridge…).

A complaint is a fact about a member, so it is recorded as a `complaint` event through
events_ingest, idempotent on (source, external_id) like every event; the crisis desk and the
health dashboard read complaints from the behaviour log.
"""

from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from crm.api.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from crm.core.api import BoundedDateTimeField, ReadSerializer, error_responses
from crm.models import Scope
from members.models import EventKind
from members.selectors import member_ids_by_external_id
from members.services import EventInput, events_ingest

CATEGORIES = [
    ("quality", _("Product quality")),
    ("service", _("Service")),
    ("price", _("Price")),
    ("delivery", _("Delivery")),
    ("other", _("Other")),
]


class ComplaintCreateApi(APIView):
    """Report a member's complaint. 201 when recorded, 200 when this (source, external_id) was already."""

    required_scope = Scope.TICKETS_WRITE

    class InputSerializer(serializers.Serializer):
        member_external_id = serializers.CharField(max_length=64)
        source = serializers.CharField(max_length=32, help_text="The reporting system, e.g. shop, wecom.")
        external_id = serializers.CharField(max_length=64, help_text="The complaint's id in that system.")
        category = serializers.ChoiceField(choices=CATEGORIES)
        text = serializers.CharField(max_length=2000, help_text="What the member said.")
        order_reference = serializers.CharField(max_length=64, required=False, allow_blank=True)
        occurred_at = BoundedDateTimeField(required=False, help_text="When it was made; now by default.")

    class OutputSerializer(ReadSerializer):
        source = serializers.CharField()
        external_id = serializers.CharField()
        status = serializers.ChoiceField(choices=["created", "duplicate"])

    @extend_schema(
        operation_id="complaints_create",
        tags=["complaints"],
        parameters=[IDEMPOTENCY_PARAMETER],
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            201: OutputSerializer,
            **error_responses(not_found=True, write=True),
        },
    )
    @idempotent
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        member_id = member_ids_by_external_id([data["member_external_id"]]).get(data["member_external_id"])
        if member_id is None:
            raise NotFound(_("No member has this number."))
        payload = {"category": data["category"], "text": data["text"]}
        if data.get("order_reference"):
            payload["order_reference"] = data["order_reference"]
        result = events_ingest(
            events=[
                EventInput(
                    member_id=member_id,
                    kind=EventKind.COMPLAINT,
                    occurred_at=data.get("occurred_at") or timezone.now(),
                    source=data["source"],
                    external_id=data["external_id"],
                    payload=payload,
                )
            ]
        )
        created = result.created == 1
        body = {
            "source": data["source"],
            "external_id": data["external_id"],
            "status": "created" if created else "duplicate",
        }
        return Response(
            self.OutputSerializer(body).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )
