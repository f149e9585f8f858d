"""Badges and titles: awarded set-based by their rules, once per member, or by staff by hand.

badges_award runs one INSERT … SELECT … ON CONFLICT (member, badge) DO NOTHING per active badge
with a rule: the SELECT finds every member who meets the rule, the unique constraint makes the
award happen once however often the job runs (also two runs at the same time). A title with a
validity lapses by itself (expires_at); a lapsed or revoked title is not awarded again by the
job (a member holds a badge once); staff may award it again by hand.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractUser
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from crm.core.exceptions import ApplicationError
from loyalty.models import Badge, BadgeRule, MemberBadge
from loyalty.services.earning import _day_number, _local_date
from members.models import ACTIVE_KINDS, EventKind, Member, MemberEvent

AWARD_PERMISSION = "loyalty.award_badges"
TOP_ACTIVE_DEFAULT_DAYS = 30


def badges_award(*, now: datetime | None = None, badges: Iterable[Badge] | None = None) -> dict[str, int]:
    """Award every active rule-based badge to the members who now meet its rule; {code: new awards}."""
    now = now or timezone.now()
    if badges is None:
        badges = Badge.objects.filter(is_active=True).exclude(rule=BadgeRule.MANUAL).order_by("pk")
    awarded: dict[str, int] = {}
    for badge in badges:
        if badge.rule == BadgeRule.MANUAL:
            continue
        with transaction.atomic():
            awarded[badge.code] = _award_by_rule(badge, now=now)
    return awarded


def _qualifying_members_sql(badge: Badge, *, now: datetime) -> tuple[str, list]:
    """SELECT member_id of the members who meet the badge's rule, and its parameters."""
    event = MemberEvent._meta.db_table
    ops = connection.ops
    days = badge.period_days
    if badge.rule == BadgeRule.TOP_ACTIVE and not days:
        days = TOP_ACTIVE_DEFAULT_DAYS
    period, period_params = "", []
    if days:
        period = "AND e.occurred_at > %s AND e.occurred_at <= %s"
        period_params = [ops.adapt_datetimefield_value(now - timedelta(days=days)), ops.adapt_datetimefield_value(now)]
    n = badge.threshold
    rule = badge.rule
    if rule in (BadgeRule.CHECK_IN_TOTAL, BadgeRule.CHECK_IN_STREAK):
        day = _local_date("e.occurred_at")
        days_sql = (
            f"SELECT DISTINCT e.member_id, {day} AS day FROM {event} e "
            f"WHERE e.kind = '{EventKind.CHECK_IN.value}' {period}"
        )
        if rule == BadgeRule.CHECK_IN_TOTAL:
            return f"SELECT member_id FROM ({days_sql}) d GROUP BY member_id HAVING COUNT(*) >= %s", [
                *period_params,
                int(n),
            ]
        # Gaps and islands: consecutive days share day_number - row_number.
        return (
            f"""
            SELECT member_id FROM (
                SELECT member_id, {_day_number("day")} - ROW_NUMBER() OVER (PARTITION BY member_id ORDER BY day)
                       AS island
                FROM ({days_sql}) d
            ) i GROUP BY member_id, island HAVING COUNT(*) >= %s
            """,
            [*period_params, int(n)],
        )
    if rule in (BadgeRule.UGC_APPROVED, BadgeRule.INVITES):
        kind = "e.kind = 'ugc' AND e.sub_kind = 'approved'" if rule == BadgeRule.UGC_APPROVED else "e.kind = 'invite'"
        return (
            f"SELECT e.member_id FROM {event} e WHERE {kind} {period} GROUP BY e.member_id HAVING COUNT(*) >= %s",
            [*period_params, int(n)],
        )
    if rule == BadgeRule.SPEND:
        return (
            f"""
            SELECT e.member_id FROM {event} e
            WHERE e.kind IN ('{EventKind.PURCHASE.value}', '{EventKind.REFUND.value}') {period}
            GROUP BY e.member_id
            HAVING SUM(CASE WHEN e.kind = '{EventKind.REFUND.value}' THEN -e.amount ELSE e.amount END)
                   >= CAST(%s AS NUMERIC)
            """,
            [*period_params, str(n)],
        )
    if rule == BadgeRule.TOP_ACTIVE:
        # The top N% of all members, ranked by their events over the period; ties share a rank.
        places = int(Member.objects.count() * n / 100)
        kinds = ", ".join(f"'{kind}'" for kind in sorted(ACTIVE_KINDS))
        return (
            f"""
            SELECT member_id FROM (
                SELECT e.member_id, RANK() OVER (ORDER BY COUNT(*) DESC) AS place
                FROM {event} e WHERE e.kind IN ({kinds}) {period}
                GROUP BY e.member_id
            ) ranked WHERE place <= %s
            """,
            [*period_params, places],
        )
    raise ValueError(f"unknown badge rule {rule!r}")


def _award_by_rule(badge: Badge, *, now: datetime) -> int:
    members_sql, params = _qualifying_members_sql(badge, now=now)
    ops = connection.ops
    expires = now + timedelta(days=badge.validity_days) if badge.validity_days else None
    reason = gettext("Met the rule: %(rule)s") % {"rule": badge.get_rule_display()}
    table = MemberBadge._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {table} (member_id, badge_id, awarded_at, expires_at, reason, revoked_reason)
            SELECT q.member_id, %s, %s, %s, %s, '' FROM ({members_sql}) q WHERE q.member_id IS NOT NULL
            ON CONFLICT (member_id, badge_id) DO NOTHING
            """,
            [badge.pk, ops.adapt_datetimefield_value(now), ops.adapt_datetimefield_value(expires), reason, *params],
        )
        return max(cursor.rowcount, 0)


def _require_awarder(actor: AbstractUser | None) -> None:
    if actor is None or not actor.has_perm(AWARD_PERMISSION):
        raise ApplicationError(_("Only staff allowed to award badges may do this."))


@transaction.atomic
def badge_award(
    *, member: Member, badge: Badge, actor: AbstractUser, reason: str, now: datetime | None = None
) -> MemberBadge:
    """Award a badge or title by hand; a revoked or lapsed one is given again from now."""
    _require_awarder(actor)
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError(_("A reason is required."))
    now = now or timezone.now()
    expires = now + timedelta(days=badge.validity_days) if badge.validity_days else None
    held = MemberBadge.objects.select_for_update().filter(member=member, badge=badge).first()
    if held is None:
        try:
            with transaction.atomic():
                return MemberBadge.objects.create(
                    member=member, badge=badge, awarded_at=now, expires_at=expires, reason=reason, awarded_by=actor
                )
        except IntegrityError:
            held = MemberBadge.objects.select_for_update().get(member=member, badge=badge)
    if held.revoked_at is None and (held.expires_at is None or held.expires_at > now):
        return held
    held.awarded_at, held.expires_at, held.reason, held.awarded_by = now, expires, reason, actor
    held.revoked_at, held.revoked_reason, held.revoked_by = None, "", None
    held.save(
        update_fields=["awarded_at", "expires_at", "reason", "awarded_by", "revoked_at", "revoked_reason", "revoked_by"]
    )
    return held


@transaction.atomic
def badge_revoke(
    *, member_badge: MemberBadge, actor: AbstractUser, reason: str, now: datetime | None = None
) -> MemberBadge:
    """Take a badge or title away, keeping the row (and the award) with why and by whom."""
    _require_awarder(actor)
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError(_("A reason is required."))
    held = MemberBadge.objects.select_for_update().get(pk=member_badge.pk)
    if held.revoked_at is not None:
        return held
    held.revoked_at, held.revoked_reason, held.revoked_by = now or timezone.now(), reason, actor
    held.save(update_fields=["revoked_at", "revoked_reason", "revoked_by"])
    return held
