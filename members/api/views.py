"""Member endpoints: upsert by the partner's id, read one, list with filters."""

import time
from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ObjectDoesNotExist
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from phonenumber_field.serializerfields import PhoneNumberField
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from crm.api.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from crm.core.api import (
    BoundedDateField,
    BoundedDateTimeField,
    ReadSerializer,
    cursor_pagination,
    error_responses,
    request_has_scope,
)
from crm.models import Scope
from members.api.selectors import member_list, member_read
from members.models import Channel, Gender, Member
from members.services import member_upsert

try:  # tiers are loyalty's; without them a member read shows none
    from loyalty.selectors import tier_progress
except ImportError:  # pragma: no cover - older loyalty
    tier_progress = None

TAGS = ["members"]
EXTERNAL_ID_PARAMETER = OpenApiParameter(
    "external_id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    pattern=r"^[^/]{1,64}$",
    description="The member's number (external_id) in the partner systems.",
)


@extend_schema_field(OpenApiTypes.STR)
class PhoneOutputField(serializers.Field):
    def to_representation(self, value) -> str | None:
        # A PhoneNumber from the ORM, or the stored E.164 text from member_read.
        return getattr(value, "as_e164", None) or str(value)

    def get_attribute(self, instance):
        return instance.phone or None


class MemberRollupsSerializer(ReadSerializer):
    """What the behaviour log says of the member; kept current on every event."""

    last_active_at = serializers.DateTimeField(allow_null=True)
    last_interaction_at = serializers.DateTimeField(allow_null=True)
    last_purchase_at = serializers.DateTimeField(allow_null=True)
    orders_count = serializers.IntegerField()
    total_spent = serializers.DecimalField(max_digits=14, decimal_places=2, help_text="Purchases minus refunds, yuan.")


class MemberOutputSerializer(ReadSerializer):
    """A member's profile and rollups."""

    external_id = serializers.CharField()
    name = serializers.CharField()
    phone = PhoneOutputField(allow_null=True, help_text="E.164, e.g. +8613800000000; null when unknown.")
    email = serializers.CharField()
    gender = serializers.ChoiceField(choices=Gender.choices)
    birthday = serializers.DateField(allow_null=True)
    city = serializers.CharField()
    channel = serializers.ChoiceField(choices=Channel.choices)
    joined_at = serializers.DateTimeField()
    sms_opt_out = serializers.BooleanField()
    email_opt_out = serializers.BooleanField()
    wecom_opt_out = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    rollups = MemberRollupsSerializer(source="*")


class MemberUpsertApi(APIView):
    """Create or update a member by `external_id` (the partner's member number).

    Only the fields sent are written; rollups, points and layers cannot be set here (they follow
    from events and jobs). 201 when the member was created, 200 when it existed.
    """

    required_scope = Scope.MEMBERS_WRITE

    class InputSerializer(serializers.Serializer):
        external_id = serializers.CharField(max_length=64)
        name = serializers.CharField(max_length=100, required=False, allow_blank=True)
        phone = PhoneNumberField(required=False, allow_null=True, help_text="Mobile number; +86 is assumed.")
        email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
        gender = serializers.ChoiceField(choices=Gender.choices, required=False)
        birthday = BoundedDateField(required=False, allow_null=True)
        city = serializers.CharField(max_length=64, required=False, allow_blank=True)
        channel = serializers.ChoiceField(choices=Channel.choices, required=False)
        joined_at = BoundedDateTimeField(required=False)
        sms_opt_out = serializers.BooleanField(required=False)
        email_opt_out = serializers.BooleanField(required=False)
        wecom_opt_out = serializers.BooleanField(required=False)

    class OutputSerializer(MemberOutputSerializer):
        created = serializers.BooleanField(help_text="True when this request created the member.")

    @extend_schema(
        operation_id="members_upsert",
        tags=TAGS,
        parameters=[IDEMPOTENCY_PARAMETER],
        request=InputSerializer,
        responses={200: OutputSerializer, 201: OutputSerializer, **error_responses(write=True)},
    )
    @idempotent
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        profile = dict(serializer.validated_data)
        external_id = profile.pop("external_id")
        member, created = member_upsert(external_id=external_id, profile=profile)
        member.created = created
        return Response(
            self.OutputSerializer(member).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class MemberPointsSummarySerializer(ReadSerializer):
    balance = serializers.IntegerField()
    lifetime_earned = serializers.IntegerField()
    lifetime_redeemed = serializers.IntegerField()
    lifetime_expired = serializers.IntegerField()


class TierRefSerializer(ReadSerializer):
    code = serializers.CharField(help_text="Stable name, e.g. silver.")
    name = serializers.CharField(help_text="What members see, e.g. 白银.")


class TierProgressSerializer(ReadSerializer):
    """What is missing to reach the next tier, over that tier's qualifying period."""

    next_tier = TierRefSerializer(source="next", allow_null=True, help_text="Null at the top tier.")
    spend = serializers.DecimalField(max_digits=14, decimal_places=2, help_text="Qualifying spend so far, yuan.")
    points = serializers.IntegerField(help_text="Qualifying points earned so far.")
    spend_needed = serializers.DecimalField(max_digits=14, decimal_places=2)
    points_needed = serializers.IntegerField()
    message = serializers.CharField(help_text="E.g. 再消费 80 元升级白银, in the request's language.")


class MemberTierSerializer(ReadSerializer):
    code = serializers.CharField()
    name = serializers.CharField()
    since = serializers.DateTimeField(allow_null=True, help_text="Null while the member stands on the entry tier.")
    valid_until = serializers.DateTimeField(allow_null=True)
    progress = TierProgressSerializer(allow_null=True, help_text="Only when asked with tier_progress=true.")


class MemberBadgeSerializer(ReadSerializer):
    code = serializers.CharField(source="badge.code")
    name = serializers.CharField(source="badge.name", help_text="E.g. 活跃之星.")
    kind = serializers.CharField(source="badge.kind", help_text="badge or title.")
    awarded_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True, help_text="When a title lapses; null: kept.")


class MemberDetailApi(APIView):
    """One member with everything the CRM knows of them.

    `points` is null unless the key also has `points:read`. `tier` is the member's tier (the
    entry tier until one is assigned), with `?tier_progress=true` the distance to the next one;
    `badges` the badges and
    titles held now; `value_layer` and `lifecycle_stage` are null until segmentation scored them.
    """

    required_scope = Scope.MEMBERS_READ

    class QuerySerializer(serializers.Serializer):
        tier_progress = serializers.BooleanField(
            default=False,
            help_text="true adds the distance to the next tier (a few aggregate queries over the member's "
            "purchases and points): for showing the member what is left to the next tier.",
        )

    class OutputSerializer(MemberOutputSerializer):
        points = serializers.SerializerMethodField()
        tier = serializers.SerializerMethodField()
        value_layer = serializers.SerializerMethodField(help_text="high, potential or edge.")
        lifecycle_stage = serializers.SerializerMethodField(
            help_text="new, active, paying, at_risk, churned or silent."
        )
        badges = serializers.SerializerMethodField()

        @extend_schema_field(MemberPointsSummarySerializer(allow_null=True))
        def get_points(self, member):
            if not self.context.get("show_points"):
                return None
            account = _related(member, "points_account")
            if account is None:
                return {"balance": 0, "lifetime_earned": 0, "lifetime_redeemed": 0, "lifetime_expired": 0}
            return MemberPointsSummarySerializer(account).data

        @extend_schema_field(MemberTierSerializer(allow_null=True))
        def get_tier(self, member):
            status = _related(member, "tier_status")
            progress = self.context.get("tier_progress")
            # member_read gives the tier's code and name on the status; the ORM gives status.tier.
            # A member never assigned a tier stands on the entry tier, where everyone starts.
            current = getattr(progress, "current", None) or getattr(status, "tier", status) or _entry_tier()
            if current is None:
                return None
            tier = {
                "code": current.code,
                "name": current.name,
                "since": getattr(status, "since", None),
                "valid_until": getattr(status, "valid_until", None),
                "progress": progress,
            }
            return MemberTierSerializer(tier).data

        @extend_schema_field(serializers.CharField(allow_null=True))
        def get_value_layer(self, member) -> str | None:
            score = _related(member, "score")
            return getattr(score, "value_layer", None) or None

        @extend_schema_field(serializers.CharField(allow_null=True))
        def get_lifecycle_stage(self, member) -> str | None:
            score = _related(member, "score")
            return getattr(score, "lifecycle_stage", None) or None

        @extend_schema_field(MemberBadgeSerializer(many=True))
        def get_badges(self, member) -> list:
            return MemberBadgeSerializer(self.context.get("badges", []), many=True).data

    @extend_schema(
        operation_id="members_retrieve",
        tags=TAGS,
        parameters=[EXTERNAL_ID_PARAMETER, QuerySerializer],
        responses={200: OutputSerializer, **error_responses(not_found=True)},
    )
    def get(self, request, external_id: str):
        with_progress = False
        if request.META.get("QUERY_STRING"):
            options = self.QuerySerializer(data=request.query_params)
            options.is_valid(raise_exception=True)
            with_progress = options.validated_data["tier_progress"]
        # PostgreSQL stores no NUL character, so no member has a number with one (%00 in the URL).
        member = None if "\x00" in external_id else member_read(external_id=external_id)
        if member is None:
            raise NotFound()
        progress = None
        if with_progress and tier_progress is not None:
            progress = tier_progress(member=Member(pk=member.id))
        show_points = request_has_scope(request, Scope.POINTS_READ)
        return Response(member_detail_body(member, show_points=show_points, progress=progress))


def member_detail_body(member, *, show_points: bool, progress=None) -> dict:
    """The body of a member read, built as plain JSON types from member_read's row.

    What MemberDetailApi.OutputSerializer gives for the same member (tests/api hold the two
    equal, and the serializer documents the shape in the schema): walking DRF fields cost
    more CPU than the rest of the read, the API's hottest path, together.
    """
    moment = _moments(timezone.get_current_timezone())
    # A relation that loyalty or segmentation lacks in this version reads as missing.
    account = getattr(member, "points_account", None)
    if not show_points:
        points = None
    elif account is None:
        points = {"balance": 0, "lifetime_earned": 0, "lifetime_redeemed": 0, "lifetime_expired": 0}
    else:
        points = {
            "balance": account.balance,
            "lifetime_earned": account.lifetime_earned,
            "lifetime_redeemed": account.lifetime_redeemed,
            "lifetime_expired": account.lifetime_expired,
        }
    status = getattr(member, "tier_status", None)
    current = getattr(progress, "current", None) or status or _entry_tier()
    tier = None
    if current is not None:
        tier = {
            "code": current.code,
            "name": current.name,
            "since": moment(getattr(status, "since", None)),
            "valid_until": moment(getattr(status, "valid_until", None)),
            "progress": None if progress is None else TierProgressSerializer(progress).data,
        }
    score = getattr(member, "score", None)
    birthday = member.birthday
    return {
        "external_id": member.external_id,
        "name": member.name,
        "phone": str(member.phone) if member.phone else None,
        "email": member.email,
        "gender": member.gender,
        "birthday": birthday.isoformat() if birthday else None,
        "city": member.city,
        "channel": member.channel,
        "joined_at": moment(member.joined_at),
        "sms_opt_out": member.sms_opt_out,
        "email_opt_out": member.email_opt_out,
        "wecom_opt_out": member.wecom_opt_out,
        "created_at": moment(member.created_at),
        "updated_at": moment(member.updated_at),
        "rollups": {
            "last_active_at": moment(member.last_active_at),
            "last_interaction_at": moment(member.last_interaction_at),
            "last_purchase_at": moment(member.last_purchase_at),
            "orders_count": member.orders_count,
            "total_spent": None if member.total_spent is None else format(member.total_spent.quantize(_CENT), "f"),
        },
        "points": points,
        "tier": tier,
        "value_layer": getattr(score, "value_layer", None) or None,
        "lifecycle_stage": getattr(score, "lifecycle_stage", None) or None,
        "badges": [
            {
                "code": held.badge.code,
                "name": held.badge.name,
                "kind": held.badge.kind,
                "awarded_at": moment(held.awarded_at),
                "expires_at": moment(held.expires_at),
            }
            for held in member.badges_held or ()
        ],
    }


_CENT = Decimal("0.01")


def _moments(zone):
    """A function writing a date and time as DRF's DateTimeField does: ISO 8601 in `zone`."""

    def moment(value: datetime | None) -> str | None:
        if not value:
            return None
        text = value.astimezone(zone).isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text

    return moment


_ENTRY_TIER_SECONDS = 60
_entry_tier_cache: list = [0.0, None]


def _entry_tier():
    """The lowest tier (code and name), read at most once a minute per process; None without tiers."""
    if tier_progress is None:
        return None
    if time.monotonic() >= _entry_tier_cache[0]:
        from loyalty.models import Tier

        _entry_tier_cache[1] = Tier.objects.order_by("rank").only("code", "name").first()
        _entry_tier_cache[0] = time.monotonic() + _ENTRY_TIER_SECONDS
    return _entry_tier_cache[1]


def _related(member: Member, name: str):
    """A one-to-one row of another app, or None when it is missing (or the app lacks it)."""
    try:
        return getattr(member, name, None)
    except ObjectDoesNotExist:
        return None


class MemberListApi(APIView):
    """Members that have a partner id, oldest first, filtered; cursor-paginated (`next`/`previous`)."""

    required_scope = Scope.MEMBERS_READ
    pagination_class = cursor_pagination(ordering="id")

    class FilterSerializer(serializers.Serializer):
        channel = serializers.ChoiceField(choices=Channel.choices, required=False)
        city = serializers.CharField(max_length=64, required=False)
        joined_after = BoundedDateTimeField(required=False, help_text="Joined at or after.")
        joined_before = BoundedDateTimeField(required=False, help_text="Joined before.")
        active_after = BoundedDateTimeField(required=False, help_text="Last active at or after.")
        external_id = serializers.ListField(
            child=serializers.CharField(max_length=64),
            required=False,
            max_length=100,
            help_text="Repeat to ask for several members (up to 100).",
        )
        value_layer = serializers.ChoiceField(choices=["high", "potential", "edge"], required=False)
        lifecycle_stage = serializers.ChoiceField(
            choices=["new", "active", "paying", "at_risk", "churned", "silent"], required=False
        )

    class OutputSerializer(MemberOutputSerializer):
        pass

    @extend_schema(
        operation_id="members_list",
        tags=TAGS,
        parameters=[FilterSerializer],
        responses={200: OutputSerializer(many=True), **error_responses(not_found=True)},
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = member_list(filters=filters.validated_data)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(self.OutputSerializer(page, many=True).data)
