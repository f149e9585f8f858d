"""Delivery receipts from message gateways (SMS, WeCom): delivered, opened, clicked, failed.

Gateways are not partners: they sign each callback with the channel's secret (HMAC-SHA256 of the
body in `X-CRM-Signature`, see campaigns.outbox.delivery_receipt_record), so this endpoint takes
no API key. Receipts are idempotent by nature (a delivery's status only moves forward), so it
stores no Idempotency-Key: an unauthenticated caller must not be able to fix a key's outcome.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from campaigns.models import MessageChannel
from campaigns.outbox import delivery_receipt_record
from crm.core.api import ErrorSerializer, ReadSerializer


class DeliveryReceiptApi(APIView):
    """Record a gateway's receipt for one message: `{"delivery_id": 1, "status": "delivered"}`.

    `status` is delivered, opened, clicked or failed (with an optional "error"). A late or
    repeated receipt changes nothing and still answers 200. A bad signature, an unknown
    delivery or status is a 422.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    class InputSerializer(serializers.Serializer):
        delivery_id = serializers.IntegerField()
        status = serializers.ChoiceField(choices=["delivered", "opened", "clicked", "failed"])
        error = serializers.CharField(required=False, allow_blank=True)

    class OutputSerializer(ReadSerializer):
        delivery_id = serializers.IntegerField(source="pk")
        status = serializers.CharField(help_text="The delivery's status after the receipt.")

    @extend_schema(
        operation_id="deliveries_receipt",
        tags=["deliveries"],
        auth=[],
        parameters=[
            OpenApiParameter("channel", OpenApiTypes.STR, OpenApiParameter.PATH, enum=MessageChannel.values),
            OpenApiParameter(
                "X-CRM-Signature",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=True,
                description="sha256=<hex HMAC-SHA256 of the raw body with the channel's signing secret>",
            ),
        ],
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            422: OpenApiResponse(ErrorSerializer, description="Bad signature, unknown delivery or status."),
        },
    )
    def post(self, request, channel: str):
        # The signature covers the raw bytes: read them before anything parses the body.
        body = request.body
        delivery = delivery_receipt_record(
            channel=channel, body=body, signature=request.headers.get("X-CRM-Signature", "")
        )
        return Response(self.OutputSerializer(delivery).data)
