"""Rewards, coupons and badges over the API; every write goes through loyalty.services.

Partners' ids (a redemption's reference, an issuance's key) are namespaced by partner, as for
points movements, so that two partners never collide and a retry records nothing twice.
"""

from django.db import transaction
from django.db.models import Q
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from crm.api.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from crm.core.api import ReadSerializer, error_responses
from crm.core.exceptions import ApplicationError
from crm.models import Scope
from loyalty.api.views import REFERENCE_MAX_LENGTH, _member, reference_namespace
from loyalty.models import Badge, CouponBatch, Reward, RewardRedemption
from loyalty.services import coupon_redeem, coupons_issue_by_member_numbers, reward_redeem

ISSUE_MAX_MEMBERS = 1_000
# Coupon.issue_key holds 64 characters, the partner's namespace included.
ISSUE_KEY_MAX_LENGTH = 48
MAX_AMOUNT_DIGITS = 10


def _available_rewards(now):
    return (
        Reward.objects.filter(is_active=True)
        .filter(
            Q(valid_from__isnull=True) | Q(valid_from__lte=now), Q(valid_until__isnull=True) | Q(valid_until__gt=now)
        )
        .select_related("min_tier")
        .order_by("points_price", "id")
    )


class RewardListApi(APIView):
    """The rewards members can buy with points now, cheapest first."""

    required_scope = Scope.POINTS_READ

    class OutputSerializer(ReadSerializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        description = serializers.CharField()
        points_price = serializers.IntegerField()
        stock = serializers.IntegerField(allow_null=True, help_text="How many are left; null: unlimited.")
        per_member_limit = serializers.IntegerField(allow_null=True)
        min_tier = serializers.CharField(source="min_tier.code", allow_null=True, help_text="Lowest tier's code.")
        valid_until = serializers.DateTimeField(allow_null=True)

    @extend_schema(
        operation_id="rewards_list", tags=["rewards"], responses={200: OutputSerializer(many=True), **error_responses()}
    )
    def get(self, request):
        return Response(self.OutputSerializer(_available_rewards(timezone.now()), many=True).data)


class RewardRedeemApi(APIView):
    """Buy a reward for a member with points. 201 when redeemed, 200 when this reference already was.

    Refused with 422 when the reward is unavailable, out of stock, above the member's tier or
    limit, or the balance is short.
    """

    required_scope = Scope.POINTS_WRITE

    class InputSerializer(serializers.Serializer):
        member_external_id = serializers.CharField(max_length=64)
        reward_id = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
        reference = serializers.CharField(max_length=REFERENCE_MAX_LENGTH, help_text="Your id of this redemption.")

    class OutputSerializer(ReadSerializer):
        id = serializers.IntegerField()
        reward_id = serializers.IntegerField()
        points = serializers.IntegerField(source="points_entry.amount", help_text="Negative: points spent.")
        points_entry_id = serializers.IntegerField()
        created_at = serializers.DateTimeField()

    @extend_schema(
        operation_id="rewards_redeem",
        tags=["rewards"],
        parameters=[IDEMPOTENCY_PARAMETER],
        request=InputSerializer,
        responses={200: OutputSerializer, 201: OutputSerializer, **error_responses(not_found=True, write=True)},
    )
    @idempotent
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        member = _member(data["member_external_id"])
        reward = get_object_or_404(Reward, pk=data["reward_id"])
        key = reference_namespace(request) + data["reference"]
        existed = RewardRedemption.objects.filter(idempotency_key=key).exists()
        redemption = reward_redeem(reward=reward, member=member, idempotency_key=key)
        redemption = RewardRedemption.objects.select_related("points_entry").get(pk=redemption.pk)
        return Response(
            self.OutputSerializer(redemption).data, status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED
        )


class CouponIssueApi(APIView):
    """Give one coupon of a batch to each member listed (up to 1,000). Repeating an issuance
    (same batch and issue_key) gives nobody a second coupon."""

    required_scope = Scope.COUPONS_WRITE

    class InputSerializer(serializers.Serializer):
        batch_id = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
        member_external_ids = serializers.ListField(
            child=serializers.CharField(max_length=64), min_length=1, max_length=ISSUE_MAX_MEMBERS
        )
        issue_key = serializers.CharField(
            max_length=ISSUE_KEY_MAX_LENGTH, help_text="Your id of this issuance, e.g. a campaign step."
        )

    class OutputSerializer(ReadSerializer):
        issued = serializers.IntegerField(help_text="Coupons issued by this request.")
        unknown_members = serializers.ListField(child=serializers.CharField())

    @extend_schema(
        operation_id="coupons_issue",
        tags=["coupons"],
        parameters=[IDEMPOTENCY_PARAMETER],
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(not_found=True, write=True)},
    )
    @idempotent
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        batch = get_object_or_404(CouponBatch, pk=data["batch_id"])
        issued, unknown = coupons_issue_by_member_numbers(
            batch=batch,
            member_numbers=data["member_external_ids"],
            issue_key=reference_namespace(request) + data["issue_key"],
        )
        return Response(self.OutputSerializer({"issued": issued, "unknown_members": unknown}).data)


class _CouponUseInput(serializers.Serializer):
    code = serializers.CharField(max_length=16)
    member_external_id = serializers.CharField(max_length=64)
    order_amount = serializers.DecimalField(
        max_digits=MAX_AMOUNT_DIGITS + 2, decimal_places=2, min_value=0, help_text="The order's amount, yuan."
    )


class CouponValidateApi(APIView):
    """Would this coupon apply to this member's order, and for how much? Uses nothing.

    Answers 200 either way: `valid` with the discount, or not with the reason.
    """

    required_scope = Scope.COUPONS_WRITE

    class InputSerializer(_CouponUseInput):
        pass

    class OutputSerializer(ReadSerializer):
        valid = serializers.BooleanField()
        discount = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)
        reason = serializers.CharField(allow_null=True)

    @extend_schema(
        operation_id="coupons_validate",
        tags=["coupons"],
        parameters=[IDEMPOTENCY_PARAMETER],
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(not_found=True, write=True)},
    )
    @idempotent
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        member = _member(data["member_external_id"])
        try:
            # The redemption's own rules, run and rolled back: one place decides what applies.
            with transaction.atomic():
                use = coupon_redeem(code=data["code"], member=member, order_amount=data["order_amount"])
                transaction.set_rollback(True)
        except ApplicationError as refusal:
            body = {"valid": False, "discount": None, "reason": str(refusal.message)}
        else:
            body = {"valid": True, "discount": use.discount, "reason": None}
        return Response(self.OutputSerializer(body).data)


class CouponRedeemApi(APIView):
    """Use a coupon on a member's order; returns the discount. Sending the same order again
    (a till retrying) returns the same answer; any other use of a used coupon is a 422."""

    required_scope = Scope.COUPONS_WRITE

    class InputSerializer(_CouponUseInput):
        order_ref = serializers.CharField(max_length=64, help_text="Your order number.")

    class OutputSerializer(ReadSerializer):
        code = serializers.CharField(source="coupon.code")
        discount = serializers.DecimalField(max_digits=14, decimal_places=2)
        used_at = serializers.DateTimeField(source="coupon.used_at")
        order_ref = serializers.CharField(source="coupon.order_ref")

    @extend_schema(
        operation_id="coupons_redeem",
        tags=["coupons"],
        parameters=[IDEMPOTENCY_PARAMETER],
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(not_found=True, write=True)},
    )
    @idempotent
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        member = _member(data["member_external_id"])
        use = coupon_redeem(
            code=data["code"], member=member, order_amount=data["order_amount"], order_ref=data["order_ref"]
        )
        return Response(self.OutputSerializer(use).data)


class BadgeListApi(APIView):
    """The badges and honorary titles members can hold, and what earns them."""

    required_scope = Scope.MEMBERS_READ

    class OutputSerializer(ReadSerializer):
        code = serializers.CharField()
        name = serializers.CharField()
        kind = serializers.CharField(help_text="badge or title.")
        description = serializers.CharField()
        privileges = serializers.CharField()
        rule = serializers.CharField()
        threshold = serializers.DecimalField(max_digits=12, decimal_places=2)
        period_days = serializers.IntegerField(allow_null=True)

    @extend_schema(
        operation_id="badges_list", tags=["badges"], responses={200: OutputSerializer(many=True), **error_responses()}
    )
    def get(self, request):
        return Response(
            self.OutputSerializer(Badge.objects.filter(is_active=True).order_by("kind", "name"), many=True).data
        )
