"""Complaints reported by partners (the shop's service desk, the WeCom bridge…).

A complaint is a fact about a member, so it is recorded as a `complaint` event through
events_ingest, idempotent on (source, external_id) like every event; the crisis desk and the
health dashboard read complaints from the behaviour log.

A complaint the partner marks with a severity at or above the one staff set in the crisis desk's
settings also opens a crisis ticket, or joins the open one of its category (crm.desk.complaints);
the answer names the ticket.
"""

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from crm.api.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from crm.core.api import BoundedDateTimeField, ReadSerializer, error_responses
from crm.desk.complaints import ticket_for_complaint, ticket_of_complaint
from crm.desk.models import Severity
from crm.models import Scope
from members.models import EventKind, Member
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
        severity = serializers.ChoiceField(
            choices=Severity.choices,
            required=False,
            allow_blank=True,
            help_text="How serious the partner judges it. From the severity staff set (default: high), the "
            "complaint opens a crisis ticket, or joins the open one of its category.",
        )

    class OutputSerializer(ReadSerializer):
        source = serializers.CharField()
        external_id = serializers.CharField()
        status = serializers.ChoiceField(choices=["created", "duplicate"])
        ticket = serializers.IntegerField(
            allow_null=True, help_text="The crisis ticket the complaint opened or joined, if any."
        )

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
        if data.get("severity"):
            payload["severity"] = data["severity"]
        with transaction.atomic():
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
            if created:
                ticket = ticket_for_complaint(
                    member=Member.objects.get(pk=member_id),
                    severity=data.get("severity", ""),
                    category=data["category"],
                    text=data["text"],
                    source=data["source"],
                    external_id=data["external_id"],
                )
                ticket_id = ticket.pk if ticket is not None else None
            else:
                ticket_id = ticket_of_complaint(source=data["source"], external_id=data["external_id"])
        body = {
            "source": data["source"],
            "external_id": data["external_id"],
            "status": "created" if created else "duplicate",
            "ticket": ticket_id,
        }
        return Response(
            self.OutputSerializer(body).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )
