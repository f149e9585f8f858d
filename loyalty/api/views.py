"""Points endpoints. Every movement goes through loyalty.services; these views only shape it.

A movement carries the partner's `reference` (an order number, a coupon code…): the ledger keeps
it, namespaced by partner, as the entry's idempotency key, so sending the same movement twice
records it once, with or without an Idempotency-Key header.
"""

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from crm.api.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from crm.core.api import BoundedDateTimeField, PartnerKey, ReadSerializer, cursor_pagination, error_responses
from crm.models import Scope
from loyalty.models import LoyaltySettings, PointsAccount, PointsEntry, Tier
from loyalty.selectors import points_open_lots, yuan_value
from loyalty.services import points_credit, points_debit, points_reverse
from members.api.views import EXTERNAL_ID_PARAMETER
from members.models import Member

TAGS = ["points"]
MAX_POINTS = 2**31 - 1
REFERENCE_MAX_LENGTH = 100
OPEN_LOTS_SHOWN = 20


def reference_namespace(request) -> str:
    """The prefix of the ledger keys written by this caller: `api:p<partner>:` or `api:u<user>:`."""
    if isinstance(request.auth, PartnerKey):
        return f"api:p{request.auth.partner_id}:"
    return f"api:u{request.user.pk}:"


def _actor(request):
    """Staff act as themselves (the services check their permissions); partners as the system."""
    return None if isinstance(request.auth, PartnerKey) else request.user


def _member(external_id: str) -> Member:
    return get_object_or_404(Member.objects.only("id", "external_id"), external_id=external_id)


class EntryOutputSerializer(ReadSerializer):
    id = serializers.IntegerField()
    kind = serializers.CharField(help_text="earn, redeem, expire, adjust or reverse.")
    points = serializers.IntegerField(source="amount", help_text="Positive for credits, negative for debits.")
    reason = serializers.CharField()
    reference = serializers.SerializerMethodField(help_text="Your reference, for movements you sent; else null.")
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True, help_text="For credits: when the points expire.")
    remaining = serializers.IntegerField(allow_null=True, help_text="For credits: points not spent or expired yet.")
    reverses = serializers.IntegerField(source="reverses_id", allow_null=True, help_text="The entry this one reverses.")

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_reference(self, entry) -> str | None:
        namespace = self.context.get("namespace", "")
        key = entry.idempotency_key
        return key[len(namespace) :] if namespace and key.startswith(namespace) else None


class MovementInputSerializer(serializers.Serializer):
    member_external_id = serializers.CharField(max_length=64)
    points = serializers.IntegerField(min_value=1, max_value=MAX_POINTS)
    reason = serializers.CharField(max_length=255)
    reference = serializers.CharField(
        max_length=REFERENCE_MAX_LENGTH,
        help_text="Your unique id of this movement (order number…); a repeat records nothing new.",
    )


class _MovementApi(APIView):
    required_scope = Scope.POINTS_WRITE

    def _respond(self, request, entry: PointsEntry, existed: bool) -> Response:
        data = EntryOutputSerializer(entry, context={"namespace": reference_namespace(request)}).data
        return Response(data, status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED)

    @staticmethod
    def _existed(key: str) -> bool:
        return PointsEntry.objects.filter(idempotency_key=key).exists()


class PointsEarnApi(_MovementApi):
    """Give a member points (a new lot). 201 when recorded, 200 when this reference was already."""

    class InputSerializer(MovementInputSerializer):
        expires_at = BoundedDateTimeField(
            required=False, help_text="When these points expire; by default the policy set by staff."
        )

    @extend_schema(
        operation_id="points_earn",
        tags=TAGS,
        parameters=[IDEMPOTENCY_PARAMETER],
        request=InputSerializer,
        responses={
            200: EntryOutputSerializer,
            201: EntryOutputSerializer,
            **error_responses(not_found=True, write=True),
        },
    )
    @idempotent
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        member = _member(data["member_external_id"])
        key = reference_namespace(request) + data["reference"]
        existed = self._existed(key)
        entry = points_credit(
            member=member,
            amount=data["points"],
            reason=data["reason"],
            idempotency_key=key,
            expires_at=data.get("expires_at"),
            actor=_actor(request),
        )
        return self._respond(request, entry, existed)


class PointsRedeemApi(_MovementApi):
    """Spend a member's points, soonest-expiring first; 422 when the balance is short."""

    class InputSerializer(MovementInputSerializer):
        pass

    @extend_schema(
        operation_id="points_redeem",
        tags=TAGS,
        parameters=[IDEMPOTENCY_PARAMETER],
        request=InputSerializer,
        responses={
            200: EntryOutputSerializer,
            201: EntryOutputSerializer,
            **error_responses(not_found=True, write=True),
        },
    )
    @idempotent
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        member = _member(data["member_external_id"])
        key = reference_namespace(request) + data["reference"]
        existed = self._existed(key)
        entry = points_debit(
            member=member, amount=data["points"], reason=data["reason"], idempotency_key=key, actor=_actor(request)
        )
        return self._respond(request, entry, existed)


class PointsReverseApi(_MovementApi):
    """Cancel one of your earlier movements (a refund, a cancelled redemption), once.

    Name it by the reference you sent it with. Reversing a credit takes back what is left of it
    (never below zero); reversing a redemption gives the points back with their original expiry.
    """

    class InputSerializer(serializers.Serializer):
        member_external_id = serializers.CharField(max_length=64)
        original_reference = serializers.CharField(
            max_length=REFERENCE_MAX_LENGTH, help_text="The reference of the movement to reverse."
        )
        reason = serializers.CharField(max_length=255)
        reference = serializers.CharField(max_length=REFERENCE_MAX_LENGTH, help_text="Your id of this reversal.")

    @extend_schema(
        operation_id="points_reverse",
        tags=TAGS,
        parameters=[IDEMPOTENCY_PARAMETER],
        request=InputSerializer,
        responses={
            200: EntryOutputSerializer,
            201: EntryOutputSerializer,
            **error_responses(not_found=True, write=True),
        },
    )
    @idempotent
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        member = _member(data["member_external_id"])
        namespace = reference_namespace(request)
        original = get_object_or_404(PointsEntry, member=member, idempotency_key=namespace + data["original_reference"])
        key = namespace + data["reference"]
        existed = self._existed(key)
        entry = points_reverse(entry=original, reason=data["reason"], idempotency_key=key, actor=_actor(request))
        return self._respond(request, entry, existed)


class OpenLotSerializer(ReadSerializer):
    points = serializers.IntegerField(source="remaining")
    expires_at = serializers.DateTimeField(allow_null=True)


class PointsBalanceApi(APIView):
    """A member's balance, what it is worth, and which points expire when (soonest first)."""

    required_scope = Scope.POINTS_READ

    class OutputSerializer(ReadSerializer):
        member_external_id = serializers.CharField()
        balance = serializers.IntegerField()
        lifetime_earned = serializers.IntegerField()
        lifetime_redeemed = serializers.IntegerField()
        lifetime_expired = serializers.IntegerField()
        yuan_value = serializers.DecimalField(max_digits=14, decimal_places=2, help_text="What the balance is worth.")
        points_per_yuan = serializers.IntegerField()
        open_lots = OpenLotSerializer(many=True, help_text=f"The first {OPEN_LOTS_SHOWN} lots in spending order.")

    @extend_schema(
        operation_id="points_balance",
        tags=TAGS,
        parameters=[EXTERNAL_ID_PARAMETER],
        responses={200: OutputSerializer, **error_responses(not_found=True)},
    )
    def get(self, request, external_id: str):
        member = _member(external_id)
        account = PointsAccount.objects.filter(member=member).first() or PointsAccount(member=member)
        points_per_yuan = LoyaltySettings.load().points_per_yuan
        now = timezone.now()
        lots = [
            lot
            for lot in points_open_lots(member=member)[:OPEN_LOTS_SHOWN]
            if not lot.expires_at or lot.expires_at > now
        ]
        data = {
            "member_external_id": member.external_id,
            "balance": account.balance,
            "lifetime_earned": account.lifetime_earned,
            "lifetime_redeemed": account.lifetime_redeemed,
            "lifetime_expired": account.lifetime_expired,
            "yuan_value": yuan_value(account.balance, points_per_yuan=points_per_yuan),
            "points_per_yuan": points_per_yuan,
            "open_lots": lots,
        }
        return Response(self.OutputSerializer(data).data)


class PointsHistoryApi(APIView):
    """A member's ledger, newest first, cursor-paginated."""

    required_scope = Scope.POINTS_READ
    pagination_class = cursor_pagination(ordering="-id")

    class OutputSerializer(EntryOutputSerializer):
        pass

    @extend_schema(
        operation_id="points_history",
        tags=TAGS,
        parameters=[EXTERNAL_ID_PARAMETER],
        responses={200: OutputSerializer(many=True), **error_responses(not_found=True)},
    )
    def get(self, request, external_id: str):
        member = _member(external_id)
        entries = PointsEntry.objects.filter(member=member)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(entries, request, view=self)
        context = {"namespace": reference_namespace(request)}
        return paginator.get_paginated_response(self.OutputSerializer(page, many=True, context=context).data)


class TierListApi(APIView):
    """The tiers members can reach, lowest first, with what qualifies for each and its benefits."""

    required_scope = Scope.MEMBERS_READ

    class OutputSerializer(ReadSerializer):
        code = serializers.CharField()
        name = serializers.CharField()
        rank = serializers.IntegerField()
        rule = serializers.CharField(help_text="spend, points, either or both.")
        min_spend = serializers.DecimalField(max_digits=12, decimal_places=2, help_text="Yuan over the period.")
        min_points = serializers.IntegerField()
        qualifying_period_days = serializers.IntegerField()
        discount_percent = serializers.DecimalField(max_digits=5, decimal_places=2)
        points_multiplier = serializers.DecimalField(max_digits=4, decimal_places=2)
        birthday_gift = serializers.CharField()
        benefits = serializers.CharField()
        validity_days = serializers.IntegerField()

    @extend_schema(
        operation_id="tiers_list",
        tags=["tiers"],
        responses={200: OutputSerializer(many=True), **error_responses()},
    )
    def get(self, request):
        return Response(self.OutputSerializer(Tier.objects.order_by("rank"), many=True).data)
