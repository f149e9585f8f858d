"""Read queries on points, shared by the admin, member pages, campaigns and reports."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Case, F, IntegerField, Min, Q, QuerySet, Sum, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from loyalty.models import LOT_SPENDING_ORDER, EntryKind, LoyaltySettings, PointsAccount, PointsEntry
from members.models import Member

CENT = Decimal("0.01")


def points_balance(*, member: Member) -> int:
    balance = PointsAccount.objects.filter(member=member).values_list("balance", flat=True).first()
    return balance or 0


def points_open_lots(*, member: Member) -> QuerySet[PointsEntry]:
    """The member's unspent lots in the order they will be spent: what expires when."""
    return PointsEntry.objects.filter(member=member, remaining__gt=0).order_by(*LOT_SPENDING_ORDER)


def members_with_points_expiring(*, days: int, now: datetime | None = None) -> QuerySet[Member]:
    """Members with points that expire within `days`, for reminder campaigns.

    Each member carries `expiring_points` and `first_expiry` (the soonest date).
    """
    now = now or timezone.now()
    return (
        Member.objects.filter(
            points_entries__remaining__gt=0,
            points_entries__expires_at__gt=now,
            points_entries__expires_at__lte=now + timedelta(days=days),
        )
        .annotate(expiring_points=Sum("points_entries__remaining"), first_expiry=Min("points_entries__expires_at"))
        .order_by("first_expiry", "id")
    )


def yuan_value(points: int, *, points_per_yuan: int) -> Decimal:
    return (Decimal(points) / points_per_yuan).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class PointsLiability:
    points: int
    yuan: Decimal
    points_per_yuan: int


def points_liability() -> PointsLiability:
    """Outstanding points of all members and what they are worth at the current redemption value."""
    points = PointsAccount.objects.aggregate(points=Coalesce(Sum("balance"), 0))["points"]
    points_per_yuan = LoyaltySettings.load().points_per_yuan
    return PointsLiability(points=points, yuan=yuan_value(points, points_per_yuan=points_per_yuan),
                           points_per_yuan=points_per_yuan)


@dataclass(frozen=True)
class PointsFlow:
    earned: int
    redeemed: int
    expired: int

    @property
    def redemption_rate(self) -> Decimal | None:
        """Share of earned points that were redeemed (0.58 for 58%), or None when nothing was earned."""
        if self.earned <= 0:
            return None
        return (Decimal(self.redeemed) / self.earned).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


_CREDIT_KINDS = [EntryKind.EARN, EntryKind.ADJUST]


def points_flow(*, start: datetime | None = None, end: datetime | None = None) -> PointsFlow:
    """Points earned (with adjustments), redeemed and expired in [start, end), net of reversals.

    Without bounds it reads the accounts' lifetime counters, which the services keep to the
    same definition, instead of summing the whole ledger.
    """
    if start is None and end is None:
        totals = PointsAccount.objects.aggregate(
            earned=Coalesce(Sum("lifetime_earned"), 0),
            redeemed=Coalesce(Sum("lifetime_redeemed"), 0),
            expired=Coalesce(Sum("lifetime_expired"), 0),
        )
        return PointsFlow(**totals)
    entries = PointsEntry.objects.all()
    if start is not None:
        entries = entries.filter(created_at__gte=start)
    if end is not None:
        entries = entries.filter(created_at__lt=end)

    def total(condition: Q, sign: int) -> Coalesce:
        return Coalesce(
            Sum(Case(When(condition, then=F("amount") * sign), default=0, output_field=IntegerField())), 0
        )

    def kind_or_its_reversal(kinds: list[str]) -> Q:
        return Q(kind__in=kinds) | Q(kind=EntryKind.REVERSE, reverses__kind__in=kinds)

    totals = entries.aggregate(
        earned=total(kind_or_its_reversal(_CREDIT_KINDS), 1),
        redeemed=total(kind_or_its_reversal([EntryKind.REDEEM]), -1),
        expired=total(Q(kind=EntryKind.EXPIRE), -1),
    )
    return PointsFlow(**totals)
