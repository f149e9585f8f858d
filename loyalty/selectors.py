"""Read queries on points, shared by the admin, member pages, campaigns and reports."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Case, DecimalField, F, IntegerField, Min, Q, QuerySet, Sum, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from loyalty.models import (
    LOT_SPENDING_ORDER,
    Badge,
    EntryKind,
    LoyaltySettings,
    MemberBadge,
    MemberTier,
    PointsAccount,
    PointsEntry,
    Tier,
    TierChange,
    TierRule,
)
from members.models import EventKind, Member, MemberEvent

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
    return PointsLiability(
        points=points, yuan=yuan_value(points, points_per_yuan=points_per_yuan), points_per_yuan=points_per_yuan
    )


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
        return Coalesce(Sum(Case(When(condition, then=F("amount") * sign), default=0, output_field=IntegerField())), 0)

    def kind_or_its_reversal(kinds: list[str]) -> Q:
        return Q(kind__in=kinds) | Q(kind=EntryKind.REVERSE, reverses__kind__in=kinds)

    totals = entries.aggregate(
        earned=total(kind_or_its_reversal(_CREDIT_KINDS), 1),
        redeemed=total(kind_or_its_reversal([EntryKind.REDEEM]), -1),
        expired=total(Q(kind=EntryKind.EXPIRE), -1),
    )
    return PointsFlow(**totals)


# Tiers -------------------------------------------------------------------------------------


def member_qualifying_totals(*, member: Member, days: int, now: datetime | None = None) -> tuple[Decimal, int]:
    """(spend in yuan, points earned) over the last `days`: purchases minus refunds, earns net of reversals."""
    now = now or timezone.now()
    since = now - timedelta(days=days)
    spend = MemberEvent.objects.filter(
        member=member, kind__in=[EventKind.PURCHASE, EventKind.REFUND], occurred_at__gt=since, occurred_at__lte=now
    ).aggregate(
        spend=Coalesce(
            Sum(Case(When(kind=EventKind.REFUND, then=-F("amount")), default=F("amount"))),
            Decimal(0),
            output_field=DecimalField(max_digits=14, decimal_places=2),
        )
    )["spend"]
    points = PointsEntry.objects.filter(
        Q(kind=EntryKind.EARN) | Q(kind=EntryKind.REVERSE, reverses__kind=EntryKind.EARN),
        member=member,
        created_at__gt=since,
        created_at__lte=now,
    ).aggregate(points=Coalesce(Sum("amount"), 0))["points"]
    return spend, points


@dataclass(frozen=True)
class TierProgress:
    current: Tier | None
    next: Tier | None
    spend: Decimal
    points: int
    spend_needed: Decimal
    points_needed: int

    @property
    def message(self) -> Promise | str:
        """What the member is told, e.g. "Spend 80 more yuan to reach 白银" (再消费 80 元升级白银)."""
        if self.next is None:
            return _("Top tier reached.")
        values = {"tier": self.next.name, "amount": _plain_number(self.spend_needed), "points": self.points_needed}
        spend, points = self.spend_needed > 0, self.points_needed > 0
        rule = self.next.rule
        if rule == TierRule.EITHER and spend and points:
            return _("Spend %(amount)s more yuan or earn %(points)s more points to reach %(tier)s.") % values
        if rule == TierRule.BOTH and spend and points:
            return _("Spend %(amount)s more yuan and earn %(points)s more points to reach %(tier)s.") % values
        if spend and rule != TierRule.EITHER:
            return _("Spend %(amount)s more yuan to reach %(tier)s.") % values
        if points and rule != TierRule.EITHER:
            return _("Earn %(points)s more points to reach %(tier)s.") % values
        return _("Qualifies for %(tier)s.") % values


def _plain_number(amount: Decimal) -> str:
    """80 rather than 80.00; 80.5 stays 80.50."""
    return f"{amount:.0f}" if amount == amount.to_integral_value() else f"{amount:.2f}"


def tier_progress(*, member: Member, now: datetime | None = None) -> TierProgress:
    """The member's tier, the next one up, and what is missing to reach it.

    A member without a tier yet stands on the lowest tier, where everyone starts.
    """
    tiers = list(Tier.objects.order_by("rank"))
    status = MemberTier.objects.filter(member=member).select_related("tier").first()
    current = status.tier if status else (tiers[0] if tiers else None)
    higher = [tier for tier in tiers if current is None or tier.rank > current.rank]
    following = higher[0] if higher else None
    if following is None:
        return TierProgress(
            current=current, next=None, spend=Decimal(0), points=0, spend_needed=Decimal(0), points_needed=0
        )
    spend, points = member_qualifying_totals(member=member, days=following.qualifying_period_days, now=now)
    return TierProgress(
        current=current,
        next=following,
        spend=spend,
        points=points,
        spend_needed=max(Decimal(0), following.min_spend - spend) if following.counts_spend else Decimal(0),
        points_needed=max(0, following.min_points - points) if following.counts_points else 0,
    )


def member_tier_history(*, member: Member) -> QuerySet[TierChange]:
    return TierChange.objects.filter(member=member).select_related("from_tier", "to_tier", "actor").order_by("-id")


# Honors ------------------------------------------------------------------------------------


def member_badges_current(*, now: datetime | None = None) -> QuerySet[MemberBadge]:
    """Badges and titles held now: neither revoked nor lapsed."""
    now = now or timezone.now()
    return MemberBadge.objects.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now), revoked_at__isnull=True)


@dataclass(frozen=True)
class HonorRollEntry:
    badge: Badge
    holders: list[str]


def masked_name(name: str) -> str:
    """张三丰 → 张**: the honor roll is public, so it shows only the first character of a name."""
    name = (name or "").strip()
    return f"{name[0]}{'*' * max(1, len(name) - 1)}" if name else "*"


def honor_roll(*, now: datetime | None = None, per_badge: int = 100) -> list[HonorRollEntry]:
    """Public, active badges and titles (titles first) with their current holders, newest first."""
    current = member_badges_current(now=now)
    entries = []
    for badge in Badge.objects.filter(is_public=True, is_active=True).order_by("-kind", "name"):
        # -kind: "title" sorts after "badge"; titles lead the roll.
        names = current.filter(badge=badge).order_by("-awarded_at", "-id").values_list("member__name", flat=True)
        entries.append(HonorRollEntry(badge=badge, holders=[masked_name(name) for name in names[:per_badge]]))
    return entries


# The member's page in the admin ------------------------------------------------------------

MEMBER_PAGE_LOTS = 10
MEMBER_PAGE_ENTRIES = 10
EXPIRING_SOON_DAYS = 30


@dataclass(frozen=True)
class MemberLoyalty:
    """What the member's admin page shows of loyalty; built with a fixed number of queries."""

    account: PointsAccount | None
    progress: TierProgress
    tier_status: MemberTier | None
    badges: list[MemberBadge]
    open_lots: list[PointsEntry]
    more_lots: bool
    expiring_soon: int
    recent_entries: list[PointsEntry]
    more_entries: bool

    @property
    def balance(self) -> int:
        return self.account.balance if self.account else 0


def member_loyalty(
    *, member: Member, now: datetime | None = None, lots: int = MEMBER_PAGE_LOTS, entries: int = MEMBER_PAGE_ENTRIES
) -> MemberLoyalty:
    """Balance, tier and distance to the next one, badges held, open lots and recent entries.

    Nine queries whatever the member's history: each list reads one more row than it shows to
    tell whether there is more, over the member's own index.
    """
    now = now or timezone.now()
    account = PointsAccount.objects.filter(member=member).first()
    progress = tier_progress(member=member, now=now)
    status = MemberTier.objects.filter(member=member).first()
    badges = list(
        member_badges_current(now=now)
        .filter(member=member)
        .select_related("badge")
        .order_by("-badge__kind", "-awarded_at")
    )
    open_lots = list(points_open_lots(member=member)[: lots + 1])
    expiring_soon = PointsEntry.objects.filter(
        member=member, remaining__gt=0, expires_at__gt=now, expires_at__lte=now + timedelta(days=EXPIRING_SOON_DAYS)
    ).aggregate(points=Coalesce(Sum("remaining"), 0))["points"]
    recent = list(PointsEntry.objects.filter(member=member).select_related("actor").order_by("-id")[: entries + 1])
    return MemberLoyalty(
        account=account,
        progress=progress,
        tier_status=status,
        badges=badges,
        open_lots=open_lots[:lots],
        more_lots=len(open_lots) > lots,
        expiring_soon=expiring_soon,
        recent_entries=recent[:entries],
        more_entries=len(recent) > entries,
    )
