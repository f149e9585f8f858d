"""Tier changes: each locks the member's tier row and is kept as a TierChange with its reason.

Upgrades happen as soon as a member qualifies (tiers_upgrade_if_qualified, set-based, called by
the earn task and the backfill after purchases and earns); downgrades wait for the periodic
review (tier_review), after a warning and a grace period.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import AbstractUser
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext

from loyalty.models import MemberTier, Tier, TierChange
from members.models import Member


@transaction.atomic
def tier_assign(
    *,
    member: Member,
    tier: Tier,
    reason: str,
    actor: AbstractUser | None = None,
    now: datetime | None = None,
) -> TierChange | None:
    """Put a member in `tier` from `now` for the tier's validity, recording why.

    Returns the change recorded, or None when the member already had that tier.
    """
    return _assign(member=member, tier=tier, reason=reason, actor=actor, now=now or timezone.now(), upgrade_only=False)


UPGRADE_BATCH_MEMBERS = 10_000


def tiers_upgrade_if_qualified(
    *, member_ids: Iterable[int], now: datetime | None = None, batch_size: int = UPGRADE_BATCH_MEMBERS
) -> int:
    """Move each of these members up to the highest tier they now reach, never down; return how many moved.

    Set-based per batch of members, each batch one transaction: one grouped query per
    qualifying period sums their spend and one their points earned; then one statement, in
    member order, inserts the first tier of those without one and locks the tier row of those
    with one (see _lock_or_insert); upgrades are written with bulk updates, each with a
    TierChange that says what qualified the member.
    """
    now = now or timezone.now()
    tiers = list(Tier.objects.order_by("rank"))
    ids = sorted({int(member_id) for member_id in member_ids})
    if not tiers or not ids:
        return 0
    upgrades = 0
    for start in range(0, len(ids), batch_size):
        with transaction.atomic():
            upgrades += len(_upgrade_batch(ids[start : start + batch_size], tiers=tiers, now=now))
    return upgrades


@transaction.atomic
def tier_upgrade_if_qualified(*, member: Member, now: datetime | None = None) -> TierChange | None:
    """Move the member up to the highest tier they now reach, never down; return the change, if any."""
    tiers = list(Tier.objects.order_by("rank"))
    if not tiers:
        return None
    changes = _upgrade_batch([member.pk], tiers=tiers, now=now or timezone.now())
    return changes[0] if changes else None


def _qualifying_totals(member_ids: list[int], *, days: int, now: datetime) -> dict[int, tuple[Decimal, int]]:
    """{member id: (spend, points earned)} over the last `days`, for members with either; two grouped queries."""
    from django.db.models import Case, DecimalField, F, Q, Sum, When

    from loyalty.models import EntryKind, PointsEntry
    from members.models import EventKind, MemberEvent

    since = now - timedelta(days=days)
    spend = dict(
        MemberEvent.objects.filter(
            member_id__in=member_ids,
            kind__in=[EventKind.PURCHASE, EventKind.REFUND],
            occurred_at__gt=since,
            occurred_at__lte=now,
        )
        .values("member_id")
        .annotate(
            spend=Sum(
                Case(
                    When(kind=EventKind.REFUND, then=-F("amount")),
                    default=F("amount"),
                    output_field=DecimalField(max_digits=14, decimal_places=2),
                )
            )
        )
        .order_by()
        .values_list("member_id", "spend")
    )
    points = dict(
        PointsEntry.objects.filter(
            Q(kind=EntryKind.EARN) | Q(kind=EntryKind.REVERSE, reverses__kind=EntryKind.EARN),
            member_id__in=member_ids,
            created_at__gt=since,
            created_at__lte=now,
        )
        .values("member_id")
        .annotate(points=Sum("amount"))
        .order_by()
        .values_list("member_id", "points")
    )
    return {
        member_id: (spend.get(member_id) or Decimal(0), points.get(member_id) or 0)
        for member_id in spend.keys() | points.keys()
    }


def _upgrade_batch(member_ids: list[int], *, tiers: list[Tier], now: datetime) -> list[TierChange]:
    """Upgrades of these members (sorted ids); the caller holds a transaction."""
    periods = sorted({tier.qualifying_period_days for tier in tiers})
    totals = {days: _qualifying_totals(member_ids, days=days, now=now) for days in periods}
    nothing = (Decimal(0), 0)

    def best_tier(member_id: int) -> Tier | None:
        for tier in reversed(tiers):
            spend, points = totals[tier.qualifying_period_days].get(member_id, nothing)
            if tier.is_reached(spend=spend, points=points):
                return tier
        return None

    def reason(member_id: int, tier: Tier) -> str:
        spend, points = totals[tier.qualifying_period_days].get(member_id, nothing)
        return gettext("Qualified: spent %(spend)s yuan and earned %(points)s points in the last %(days)s days.") % {
            "spend": spend,
            "points": points,
            "days": tier.qualifying_period_days,
        }

    # Members who reach no tier at all can be neither given a first tier nor moved up.
    best = {member_id: tier for member_id in member_ids if (tier := best_tier(member_id)) is not None}
    created = _lock_or_insert(best, now=now)
    # Locked above, so this plain read (a statement later, hence a newer snapshot) is final.
    statuses = MemberTier.objects.filter(member_id__in=sorted(set(best) - created)).select_related("tier")
    changes = [
        TierChange(
            member_id=member_id, to_tier=best[member_id], reason=reason(member_id, best[member_id]), created_at=now
        )
        for member_id in sorted(created)
    ]
    moved = []
    for status in sorted(statuses, key=lambda status: status.member_id):
        tier = best[status.member_id]
        if tier.rank <= status.tier.rank:
            continue
        changes.append(
            TierChange(
                member_id=status.member_id,
                from_tier=status.tier,
                to_tier=tier,
                reason=reason(status.member_id, tier),
                created_at=now,
            )
        )
        status.tier, status.since, status.valid_until = tier, now, now + timedelta(days=tier.validity_days)
        status.updated_at = timezone.now()
        moved.append(status)
    _write_statuses(moved)
    return TierChange.objects.bulk_create(changes)


# Rows per UPDATE of _write_statuses: four parameters each, within SQLite's limit of 32,766.
WRITE_CHUNK_ROWS = 5_000


def _write_statuses(statuses: list[MemberTier]) -> None:
    """Save tier, since and valid_until of these (locked) tier rows: one UPDATE … FROM a VALUES
    list per chunk. Django's bulk_update builds a CASE with a branch per row, which PostgreSQL
    evaluates row by row: 16 s for 5,000 rows against a fraction of a second here."""
    table = MemberTier._meta.db_table
    ops = connection.ops
    stamp = ops.adapt_datetimefield_value(timezone.now())
    value_sql = (
        "(%s, %s, CAST(%s AS timestamptz), CAST(%s AS timestamptz))"
        if connection.vendor == "postgresql"
        else ("(%s, %s, %s, %s)")
    )
    for start in range(0, len(statuses), WRITE_CHUNK_ROWS):
        chunk = statuses[start : start + WRITE_CHUNK_ROWS]
        params = []
        for status in chunk:
            params += [
                status.pk,
                status.tier_id,
                ops.adapt_datetimefield_value(status.since),
                ops.adapt_datetimefield_value(status.valid_until),
            ]
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                WITH v (id, tier_id, since, valid_until) AS (VALUES {", ".join([value_sql] * len(chunk))})
                UPDATE {table} SET tier_id = v.tier_id, since = v.since, valid_until = v.valid_until, updated_at = %s
                FROM v WHERE {table}.id = v.id
                """,
                [*params, stamp],
            )


def _lock_or_insert(first: dict[int, Tier], *, now: datetime) -> set[int]:
    """In one statement, in member order: insert the first tier of these members that have no
    tier row, lock the tier row of the others; return the members inserted.

    One ordered pass is what keeps parallel batches from deadlocking. Locking the existing rows
    first and inserting the missing ones after (as before) took the locks out of member order:
    a batch holding the row of member 5 could wait for the row of member 1 that another batch
    had meanwhile inserted, or locked, before waiting for member 5. ON CONFLICT DO UPDATE locks
    the conflicting row even though its WHERE false changes nothing; a row another transaction
    is inserting is waited for, then locked.
    """
    if not first:
        return set()
    ops = connection.ops
    table = MemberTier._meta.db_table
    stamp = ops.adapt_datetimefield_value(timezone.now())
    rows, params = [], []
    for member_id in sorted(first):
        tier = first[member_id]
        rows.append("(%s, %s, %s, %s, %s, %s)")
        params += [
            stamp,
            stamp,
            member_id,
            tier.pk,
            ops.adapt_datetimefield_value(now),
            ops.adapt_datetimefield_value(now + timedelta(days=tier.validity_days)),
        ]
    with connection.cursor() as cursor:
        # RETURNING gives the inserted rows only: the locked ones are not updated.
        cursor.execute(
            f"""
            INSERT INTO {table} (created_at, updated_at, member_id, tier_id, since, valid_until)
            VALUES {", ".join(rows)}
            ON CONFLICT (member_id) DO UPDATE SET tier_id = {table}.tier_id WHERE false
            RETURNING member_id
            """,
            params,
        )
        return {row[0] for row in cursor.fetchall()}


def _locked_status(member: Member) -> MemberTier | None:
    return MemberTier.objects.select_for_update().select_related("tier").filter(member=member).first()


def _assign(
    *, member: Member, tier: Tier, reason: str, actor: AbstractUser | None, now: datetime, upgrade_only: bool
) -> TierChange | None:
    valid_until = now + timedelta(days=tier.validity_days)
    status = _locked_status(member)
    if status is None:
        try:
            with transaction.atomic():
                MemberTier.objects.create(member=member, tier=tier, since=now, valid_until=valid_until)
        except IntegrityError:
            # A concurrent call gave the member a first tier meanwhile: decide again against it.
            status = _locked_status(member)
        else:
            return TierChange.objects.create(member=member, to_tier=tier, reason=reason, actor=actor)
    if status.tier_id == tier.pk or (upgrade_only and status.tier.rank >= tier.rank):
        return None
    from_tier = status.tier
    status.tier, status.since, status.valid_until = tier, now, valid_until
    status.save(update_fields=["tier", "since", "valid_until", "updated_at"])
    return TierChange.objects.create(member=member, from_tier=from_tier, to_tier=tier, reason=reason, actor=actor)


# Periodic review -----------------------------------------------------------------------------

REVIEW_BATCH_MEMBERS = 10_000


def tier_review(*, now: datetime | None = None, batch_size: int = REVIEW_BATCH_MEMBERS) -> dict[str, int]:
    """Review the members whose tier reached its review date (valid_until); return counts.

    Set-based per batch of members: one aggregate query per tier finds who reaches it, then the
    writes go in bulk. A member who still reaches their tier (or a higher one: upgrades happen
    on earning) keeps it for another validity period. A member below it is first warned (a
    TierDowngradeNotice, "you will drop to 白银 on …", grace period from LoyaltySettings) and
    keeps the tier; at the first review after the grace period they drop to the highest tier
    they reach, with a TierChange. Reaching the tier again meanwhile cancels the notice.
    """
    from loyalty.models import LoyaltySettings

    now = now or timezone.now()
    grace = timedelta(days=LoyaltySettings.load().tier_grace_days)
    tiers = list(Tier.objects.order_by("rank"))
    counts = {"renewed": 0, "warned": 0, "downgraded": 0}
    if not tiers:
        return counts
    due_ids = list(
        MemberTier.objects.filter(valid_until__lte=now).order_by("member_id").values_list("member_id", flat=True)
    )
    for start in range(0, len(due_ids), batch_size):
        with transaction.atomic():
            _review_batch(due_ids[start : start + batch_size], tiers=tiers, now=now, grace=grace, counts=counts)
    return counts


def _reached_rank(member_ids: list[int], *, tiers: list[Tier], now: datetime) -> dict[int, int]:
    """The highest rank each member reaches now (the lowest tier is always reached)."""
    from django.db.models import Case, DecimalField, F, Q, Sum, When

    from loyalty.models import EntryKind, PointsEntry
    from members.models import EventKind, MemberEvent

    reached = dict.fromkeys(member_ids, tiers[0].rank)
    for tier in tiers[1:]:
        since = now - timedelta(days=tier.qualifying_period_days)
        spend_ok = points_ok = set()
        if tier.counts_spend:
            spend_ok = set(
                MemberEvent.objects.filter(
                    member_id__in=member_ids,
                    kind__in=[EventKind.PURCHASE, EventKind.REFUND],
                    occurred_at__gt=since,
                    occurred_at__lte=now,
                )
                .values("member_id")
                .annotate(
                    spend=Sum(
                        Case(
                            When(kind=EventKind.REFUND, then=-F("amount")),
                            default=F("amount"),
                            output_field=DecimalField(max_digits=14, decimal_places=2),
                        )
                    )
                )
                .filter(spend__gte=tier.min_spend)
                .values_list("member_id", flat=True)
            )
        if tier.counts_points:
            points_ok = set(
                PointsEntry.objects.filter(
                    Q(kind=EntryKind.EARN) | Q(kind=EntryKind.REVERSE, reverses__kind=EntryKind.EARN),
                    member_id__in=member_ids,
                    created_at__gt=since,
                    created_at__lte=now,
                )
                .values("member_id")
                .annotate(points=Sum("amount"))
                .filter(points__gte=tier.min_points)
                .values_list("member_id", flat=True)
            )
            if tier.min_points == 0:
                points_ok = set(member_ids)
        if tier.counts_spend and tier.min_spend == 0:
            spend_ok = set(member_ids)
        rule = {"spend": spend_ok, "points": points_ok, "either": spend_ok | points_ok, "both": spend_ok & points_ok}
        for member_id in rule[tier.rule]:
            reached[member_id] = max(reached[member_id], tier.rank)
    return reached


def _review_batch(member_ids: list[int], *, tiers: list[Tier], now: datetime, grace: timedelta, counts: dict) -> None:
    from django.utils.formats import date_format

    from loyalty.models import TierDowngradeNotice

    by_rank = {tier.rank: tier for tier in tiers}
    statuses = list(
        MemberTier.objects.select_for_update()
        .filter(member_id__in=member_ids, valid_until__lte=now)
        .select_related("tier")
        .order_by("member_id")
    )
    reached = _reached_rank([status.member_id for status in statuses], tiers=tiers, now=now)
    notices = {
        notice.member_id: notice
        for notice in TierDowngradeNotice.objects.select_for_update().filter(
            member_id__in=member_ids, resolved_at__isnull=True
        )
    }
    renewed, changed, new_notices, resolved, changes = [], [], [], [], []
    for status in statuses:
        best = reached[status.member_id]
        notice = notices.get(status.member_id)
        if best >= status.tier.rank:
            status.valid_until = now + timedelta(days=status.tier.validity_days)
            renewed.append(status)
            if notice is not None:
                notice.resolved_at, notice.outcome = now, TierDowngradeNotice.Outcome.KEPT
                resolved.append(notice)
            continue
        lower = by_rank[best]
        if notice is None:
            downgrade_on = now + grace
            message = gettext("You will drop to %(tier)s on %(date)s unless you qualify again.") % {
                "tier": lower.name,
                "date": date_format(timezone.localtime(downgrade_on), "DATE_FORMAT"),
            }
            new_notices.append(
                TierDowngradeNotice(
                    member_id=status.member_id,
                    from_tier=status.tier,
                    to_tier=lower,
                    message=message,
                    downgrade_on=downgrade_on,
                    created_at=now,
                )
            )
            counts["warned"] += 1
        elif notice.downgrade_on <= now:
            reason = gettext("Review: the qualifying rule of %(tier)s was no longer met after the grace period.") % {
                "tier": status.tier.name
            }
            changes.append(
                TierChange(
                    member_id=status.member_id, from_tier=status.tier, to_tier=lower, reason=reason, created_at=now
                )
            )
            status.tier, status.since = lower, now
            status.valid_until = now + timedelta(days=lower.validity_days)
            changed.append(status)
            notice.resolved_at, notice.outcome = now, TierDowngradeNotice.Outcome.DOWNGRADED
            resolved.append(notice)
            counts["downgraded"] += 1
    _write_statuses(renewed + changed)
    TierDowngradeNotice.objects.bulk_update(resolved, ["resolved_at", "outcome"])
    TierDowngradeNotice.objects.bulk_create(new_notices)
    TierChange.objects.bulk_create(changes)
    counts["renewed"] += len(renewed)
