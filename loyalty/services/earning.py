"""Points earned from the behaviour log, by the earn rules staff edit in the admin.

Set-based: for a batch of events (a list of ids from ingest, or an id range from the backfill)
one INSERT … SELECT writes an earn entry per event that a rule pays for, and one UPDATE … FROM
moves the balances of the members concerned, under their accounts' row locks. Each entry's
idempotency key is earn:<event id>, so running a batch again writes nothing twice.

How many points an event earns:
- the rule of its kind and exact sub-kind, else the rule of its kind with an empty sub-kind;
- purchases: `points` per yuan, rounded down; other kinds: `points` per event;
- check-ins: on the first check-in of a day that completes a streak of a multiple of
  `streak_days` consecutive days (brand's time zone), plus `streak_bonus`, which the daily cap
  never cuts (but which counts toward the cap of the day's later events);
- then × the member's current tier multiplier (members without a tier yet: the lowest tier's)
  × the largest factor of the active double-points windows open when the event happened,
  rounded down;
- rules with a daily cap pay at most the cap per member and local day, counting what the rule
  already paid that day, in the order the events happened;
- lots expire by the policy in LoyaltySettings counted from the event's time, as a backfill
  would; events whose points would already have expired earn nothing.

Refunds: a refund event names the purchase it refunds in its payload, as "order_id" (the
purchase's event id, `external_id`, from the same member) or else as "order_no" (matching the
purchase's payload "order_no", as the shop and POS send it). A refund of the whole amount
(or without an amount) reverses the purchase's earn entry (points_reverse); a partial refund
takes back the same share of the points, as an adjustment, as far as the balance goes. A refund
recorded before its purchase takes nothing back.
"""

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Min, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext

from crm.core.exceptions import ApplicationError
from loyalty.expiry import expiry_for
from loyalty.models import (
    EarnRule,
    EntryKind,
    LoyaltySettings,
    PointsAccount,
    PointsEntry,
    PointsMultiplierWindow,
    Tier,
)
from members.models import EventKind, Member, MemberEvent

logger = logging.getLogger(__name__)

# Events per transaction in the backfill; bounds lock time and the size of each statement.
EARN_BATCH_EVENTS = 50_000


def earn_key(event_id: int) -> str:
    return f"earn:{event_id}"


def refund_key(event_id: int) -> str:
    return f"refund:{event_id}"


@dataclass
class EarnResult:
    entries: int = 0
    points: int = 0
    refunds: int = 0
    member_ids: set[int] = field(default_factory=set)


def points_earn_for_events(
    *,
    event_ids: Sequence[int] | None = None,
    first_id: int | None = None,
    last_id: int | None = None,
    now: datetime | None = None,
) -> EarnResult:
    """Write the earn entries of these events (ids, or an inclusive id range) and process refunds.

    Idempotent: events already earned and refunds already processed are skipped. `member_ids`
    of the result are the members whose spend or points changed (for tier upgrades).
    """
    if event_ids is None and (first_id is None or last_id is None):
        raise ValueError("pass event_ids, or first_id and last_id")
    where, params = _event_filter(event_ids, first_id, last_id)
    return _earn_and_refund(where=where, params=params, now=now or timezone.now())


def points_earn_backfill(
    *,
    first_id: int | None = None,
    last_id: int | None = None,
    batch_size: int = EARN_BATCH_EVENTS,
    now: datetime | None = None,
) -> EarnResult:
    """Earn points for every recorded event (or those with ids in [first_id, last_id]), by ranges of members.

    Each range of member ids (sized to hold about `batch_size` of the events) is one
    transaction that earns all of its members' events at once, so each account is created,
    locked and has its balance moved once for the whole backfill, instead of once for every
    range of events that mentions the member (ranges of events, in time order, touch most
    members each). Each range commits on its own: balance and entries agree at every commit,
    a run killed halfway resumes where it stopped when started again, and a run over events
    already earned writes nothing. Refunds are processed after their member's earns.
    """
    events = MemberEvent.objects.all()
    if first_id is not None:
        events = events.filter(id__gte=first_id)
    if last_id is not None:
        events = events.filter(id__lte=last_id)
    bounds = events.aggregate(low=Min("id"), high=Max("id"))
    members = Member.objects.aggregate(low=Min("id"), high=Max("id"))
    total = EarnResult()
    if bounds["low"] is None or members["low"] is None:
        return total
    low, high = bounds["low"], bounds["high"]
    now = now or timezone.now()
    # Event ids are dense and members spread over them: members per range ≈ members × batch / events.
    span = members["high"] - members["low"] + 1
    step = max(1, span * batch_size // (high - low + 1))
    for first_member in range(members["low"], members["high"] + 1, step):
        part = _earn_and_refund(
            where="e.member_id BETWEEN %s AND %s AND e.id BETWEEN %s AND %s",
            params=[first_member, min(first_member + step - 1, members["high"]), low, high],
            now=now,
        )
        total.entries += part.entries
        total.points += part.points
        total.refunds += part.refunds
        total.member_ids |= part.member_ids
    return total


# --- internals ----------------------------------------------------------------------------


def _earn_and_refund(*, where: str, params: list, now: datetime) -> EarnResult:
    result = EarnResult()
    rules = list(EarnRule.objects.filter(is_active=True))
    if rules:
        with transaction.atomic():
            _earn(where=where, params=params, rules=rules, now=now, result=result)
    _process_refunds(where=where, params=params, now=now, result=result)
    return result


def _event_filter(event_ids: Sequence[int] | None, first_id: int | None, last_id: int | None) -> tuple[str, list]:
    if event_ids is None:
        return "e.id BETWEEN %s AND %s", [first_id, last_id]
    ids = [int(event_id) for event_id in event_ids]
    if connection.vendor == "postgresql":
        return "e.id = ANY(%s::bigint[])", ["{" + ",".join(map(str, ids)) + "}"]
    return "e.id IN (SELECT value FROM json_each(%s))", [json.dumps(ids)]


def _tz_name() -> str:
    name = settings.TIME_ZONE
    if not re.fullmatch(r"[A-Za-z0-9_/+\-]+", name):
        raise ValueError(f"unexpected time zone name {name!r}")
    return name


def _local_date(column: str) -> str:
    """SQL for the brand's local calendar date of a timestamp column."""
    if connection.vendor == "postgresql":
        return f"CAST(({column} AT TIME ZONE '{_tz_name()}') AS date)"
    return f"django_datetime_cast_date({column}, '{_tz_name()}', 'UTC')"


def _day_number(date_sql: str) -> str:
    if connection.vendor == "postgresql":
        return f"({date_sql} - DATE '2000-01-01')"
    return f"CAST(julianday({date_sql}) AS INTEGER)"


def _floor(sql: str) -> str:
    """Round a non-negative number down to an integer (SQLite stores decimals as floats)."""
    if connection.vendor == "postgresql":
        return f"CAST(FLOOR({sql}) AS INTEGER)"
    return f"CAST(({sql}) + 0.000001 AS INTEGER)"


def _least(a: str, b: str) -> str:
    return f"(CASE WHEN {a} < {b} THEN {a} ELSE {b} END)"


def _earn(*, where: str, params: list, rules: list[EarnRule], now: datetime, result: EarnResult) -> None:
    event, entry, account = MemberEvent._meta.db_table, PointsEntry._meta.db_table, PointsAccount._meta.db_table
    rule, tier = EarnRule._meta.db_table, Tier._meta.db_table
    member_tier = "loyalty_membertier"
    ops = connection.ops
    kinds = ", ".join(f"'{kind}'" for kind in sorted({r.kind for r in rules}))
    candidates = f"{where} AND e.kind IN ({kinds})"
    recorded_at = ops.adapt_datetimefield_value(timezone.now())

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Compiling the big statement cost more than it saved (about 60 ms per batch).
            cursor.execute("SET LOCAL jit = off")
        # Expiry dates by local day of earning, computed by the same code as points_credit.
        cursor.execute(f"SELECT DISTINCT {_local_date('e.occurred_at')} FROM {event} e WHERE {candidates}", params)
        days = [row[0] for row in cursor.fetchall()]
        if not days:
            return
        config = LoyaltySettings.load()
        expiry_rows, starts = [], []
        for day in days:
            day_value = day if not isinstance(day, str) else datetime.fromisoformat(day).date()
            earned_at = timezone.make_aware(datetime.combine(day_value, datetime.min.time()))
            starts.append(earned_at)
            expires = expiry_for(earned_at=earned_at, policy=config.expiry_policy, period=config.expiry_period)
            expiry_rows.append((ops.adapt_datefield_value(day_value), ops.adapt_datetimefield_value(expires)))
        # The double-points windows open on those days, largest factor first: one CASE per event
        # instead of a subquery over the windows per event (PostgreSQL repeated it 6 times per row).
        windows = list(
            PointsMultiplierWindow.objects.filter(
                is_active=True, starts_at__lt=max(starts) + timedelta(days=1), ends_at__gt=min(starts)
            ).order_by("-factor", "pk")
        )
        timestamp = "CAST(%s AS timestamptz)" if connection.vendor == "postgresql" else "%s"
        window_factor = "1"
        window_params: list = []
        if windows:
            window_factor = (
                "(CASE "
                + " ".join(
                    f"WHEN e.occurred_at >= {timestamp} AND e.occurred_at < {timestamp} THEN {Decimal(w.factor)}"
                    for w in windows
                )
                + " ELSE 1 END)"
            )
            for w in windows:
                window_params += [ops.adapt_datetimefield_value(w.starts_at), ops.adapt_datetimefield_value(w.ends_at)]

        # Accounts first (in member order, so that overlapping batches cannot deadlock on the unique
        # index), then their row locks in id order, as every other writer of balances does.
        cursor.execute(
            f"""
            INSERT INTO {account} (member_id, balance, lifetime_earned, lifetime_redeemed, lifetime_expired,
                                   created_at, updated_at)
            SELECT DISTINCT e.member_id, 0, 0, 0, 0, %s, %s FROM {event} e WHERE {candidates}
            ORDER BY e.member_id
            ON CONFLICT (member_id) DO NOTHING
            """,
            [recorded_at, recorded_at, *params],
        )
        if connection.vendor == "postgresql":
            cursor.execute(
                f"SELECT id FROM {account} WHERE member_id IN (SELECT e.member_id FROM {event} e WHERE {candidates}) "
                "ORDER BY id FOR UPDATE",
                params,
            )
        else:
            # SQLite: entries above this id for these members are the ones this call writes (the
            # database's single write lock keeps other writers out meanwhile).
            cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {entry}")
            (last_entry_id,) = cursor.fetchone()

        capped = any(r.daily_cap is not None for r in rules)
        streaks = any(r.streak_days and r.streak_bonus for r in rules)
        day_sql = _local_date("e.occurred_at")
        value_sql = "(CAST(%s AS date), CAST(%s AS timestamptz))" if connection.vendor == "postgresql" else "(%s, %s)"
        expiry_values = ", ".join([value_sql] * len(expiry_rows))
        expiry_params = [value for row in expiry_rows for value in row]
        lowest_multiplier = f"(SELECT t0.points_multiplier FROM {tier} t0 ORDER BY t0.rank LIMIT 1)"
        multiplier = f"COALESCE(t.points_multiplier, {lowest_multiplier}, 1)"
        # Events already earned must not count again toward a daily cap or a streak; without
        # either, the insert's ON CONFLICT skips them, and a probe per event would only repeat it.
        not_yet_earned = (
            f"AND NOT EXISTS (SELECT 1 FROM {entry} p WHERE p.idempotency_key = 'earn:' || CAST(e.id AS TEXT))"
            if (capped or streaks)
            else ""
        )

        ctes = [
            f"""expiry (day, expires_at) AS (VALUES {expiry_values})""",
            f"""ev AS (
                SELECT e.id, e.member_id, e.kind, e.amount, e.occurred_at, {day_sql} AS day,
                       r.id AS rule_id, r.name AS rule_name, r.kind AS rule_kind, r.points, r.daily_cap,
                       r.streak_days, r.streak_bonus, {multiplier} * {window_factor} AS factor
                FROM {event} e
                LEFT JOIN {rule} rs ON rs.kind = e.kind AND rs.sub_kind = e.sub_kind AND rs.sub_kind <> ''
                                    AND rs.is_active
                LEFT JOIN {rule} rg ON rg.kind = e.kind AND rg.sub_kind = '' AND rg.is_active
                JOIN {rule} r ON r.id = COALESCE(rs.id, rg.id)
                LEFT JOIN {member_tier} mt ON mt.member_id = e.member_id
                LEFT JOIN {tier} t ON t.id = mt.tier_id
                WHERE {candidates} {not_yet_earned}
            )""",
        ]
        cte_params: list = [*expiry_params, *window_params, *params]
        if streaks:
            ci_day = _local_date("c.occurred_at")
            ctes.append(f"""ci_days AS (
                SELECT DISTINCT c.member_id, {ci_day} AS day FROM {event} c
                WHERE c.kind = '{EventKind.CHECK_IN.value}'
                  AND c.member_id IN (SELECT member_id FROM ev WHERE streak_days IS NOT NULL)
            )""")
            ctes.append(f"""islands AS (
                SELECT member_id, day,
                       {_day_number("day")} - ROW_NUMBER() OVER (PARTITION BY member_id ORDER BY day) AS island
                FROM ci_days
            )""")
            ctes.append("""streak AS (
                SELECT member_id, day, ROW_NUMBER() OVER (PARTITION BY member_id, island ORDER BY day) AS length
                FROM islands
            )""")
        if capped or streaks:
            prior_day = _local_date("pe.occurred_at")
            ctes.append(f"""prior AS (
                SELECT p.member_id, p.earn_rule_id AS rule_id, {prior_day} AS day, SUM(p.amount) AS points
                FROM {entry} p JOIN {event} pe ON pe.id = p.source_event_id
                WHERE p.kind = 'earn' AND p.member_id IN (
                    SELECT member_id FROM ev WHERE daily_cap IS NOT NULL OR streak_days IS NOT NULL)
                  AND p.earn_rule_id IN (
                    SELECT id FROM {rule} WHERE daily_cap IS NOT NULL OR streak_days IS NOT NULL)
                GROUP BY p.member_id, p.earn_rule_id, {prior_day}
            )""")
        if streaks:
            bonus = """CASE WHEN ev.streak_days IS NOT NULL AND ev.streak_bonus > 0
                             AND s.length %% ev.streak_days = 0 AND prior.points IS NULL
                             AND ROW_NUMBER() OVER (PARTITION BY ev.member_id, ev.rule_id, ev.day
                                                    ORDER BY ev.occurred_at, ev.id) = 1
                        THEN ev.streak_bonus ELSE 0 END"""
            streak_join = "LEFT JOIN streak s ON s.member_id = ev.member_id AND s.day = ev.day"
        else:
            bonus, streak_join = "0", ""
        base = f"""(CASE WHEN ev.rule_kind = '{EventKind.PURCHASE.value}'
                        THEN {_floor("COALESCE(ev.amount, 0) * ev.points")} ELSE ev.points END)"""
        prior_join = (
            "LEFT JOIN prior ON prior.member_id = ev.member_id AND prior.rule_id = ev.rule_id AND prior.day = ev.day"
            if (capped or streaks)
            else ""
        )
        ctes.append(f"""uncapped AS (
            SELECT ev.id, ev.member_id, ev.rule_id, ev.rule_name, ev.day, ev.occurred_at, ev.daily_cap,
                   {"COALESCE(prior.points, 0)" if (capped or streaks) else "0"} AS prior_points,
                   {_floor(f"{base} * ev.factor")} AS points,
                   {_floor(f"{bonus} * ev.factor")} AS bonus
            FROM ev
            {streak_join}
            {prior_join}
        )""")
        if capped:
            running = """u.prior_points + SUM(u.points) OVER (
                PARTITION BY u.member_id, u.rule_id, u.day ORDER BY u.occurred_at, u.id ROWS UNBOUNDED PRECEDING)"""
            ctes.append(f"""earned AS (
                SELECT u.id, u.member_id, u.rule_id, u.rule_name, u.day, u.points, u.bonus, u.daily_cap,
                       {running} AS running
                FROM uncapped u
            )""")
            awarded = f"""CASE WHEN x.daily_cap IS NULL THEN x.points
                          ELSE {_least("x.running", "x.daily_cap")} - {_least("x.running - x.points", "x.daily_cap")}
                          END"""
            source = "earned x"
        else:
            awarded, source = "x.points", "uncapped x"
        ctes.append(f"""final AS (
            SELECT x.id, x.member_id, x.rule_id, x.rule_name, x.day, {awarded} + x.bonus AS points FROM {source}
        )""")
        insert_sql = f"""
            INSERT INTO {entry} (member_id, kind, amount, reason, source_event_id, idempotency_key, expires_at,
                                 remaining, created_at, earn_rule_id)
            SELECT f.member_id, '{EntryKind.EARN.value}', f.points, f.rule_name, f.id,
                   'earn:' || CAST(f.id AS TEXT), x.expires_at, f.points, %s, f.rule_id
            FROM final f JOIN expiry x ON x.day = f.day
            WHERE f.points > 0 AND (x.expires_at IS NULL OR x.expires_at > %s)
            ON CONFLICT (idempotency_key) DO NOTHING
        """
        insert_params = [*cte_params, recorded_at, ops.adapt_datetimefield_value(now)]
        move = f"""balance = {account}.balance + d.points, lifetime_earned = {account}.lifetime_earned + d.points,
                   updated_at = %s"""
        if connection.vendor == "postgresql":
            # One statement: the entries written, the balances moved by exactly those entries,
            # and the totals per member read back, without scanning the new entries again.
            cursor.execute(
                f"""
                WITH {", ".join(ctes)},
                written AS ({insert_sql} RETURNING member_id, amount),
                d AS (SELECT member_id, SUM(amount) AS points, COUNT(*) AS entries FROM written GROUP BY member_id),
                moved AS (UPDATE {account} SET {move} FROM d WHERE {account}.member_id = d.member_id)
                SELECT member_id, points, entries FROM d
                """,
                [*insert_params, recorded_at],
            )
            totals = cursor.fetchall()
        else:
            cursor.execute(f"WITH {', '.join(ctes)} {insert_sql}", insert_params)
            new_entries = f"""
                SELECT member_id, SUM(amount) AS points, COUNT(*) AS entries FROM {entry}
                WHERE id > %s AND kind = '{EntryKind.EARN.value}'
                  AND member_id IN (SELECT e.member_id FROM {event} e WHERE {candidates})
                GROUP BY member_id
            """
            cursor.execute(
                f"UPDATE {account} SET {move} FROM ({new_entries}) AS d WHERE {account}.member_id = d.member_id",
                [recorded_at, last_entry_id, *params],
            )
            # Totals for the caller (tier upgrades, the backfill's report), from the same rows.
            cursor.execute(new_entries, [last_entry_id, *params])
            totals = cursor.fetchall()
        for member_id, points, entries in totals:
            result.member_ids.add(member_id)
            result.points += int(points)
            result.entries += entries


def _process_refunds(*, where: str, params: list, now: datetime, result: EarnResult) -> None:
    """Take back the points of refunded purchases; each refund once (key refund:<event id>)."""
    event, entry = MemberEvent._meta.db_table, PointsEntry._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT e.id FROM {event} e
            WHERE {where} AND e.kind = '{EventKind.REFUND.value}'
              AND NOT EXISTS (SELECT 1 FROM {entry} p WHERE p.idempotency_key = 'refund:' || CAST(e.id AS TEXT))
            ORDER BY e.id
            """,
            params,
        )
        refund_ids = [row[0] for row in cursor.fetchall()]
    for refund in MemberEvent.objects.filter(pk__in=refund_ids).order_by("pk"):
        try:
            if _refund_one(refund, now=now):
                result.refunds += 1
                result.member_ids.add(refund.member_id)
        except ApplicationError as error:
            logger.warning("refund %s: points not taken back: %s", refund.pk, error.message)


def refund_purchase(refund: MemberEvent) -> MemberEvent | None:
    """The purchase a refund event refunds, by its payload's order_id or order_no."""
    payload = refund.payload if isinstance(refund.payload, dict) else {}
    # Only purchases recorded before the refund: the same answer whenever the refund is processed.
    purchases = MemberEvent.objects.filter(member_id=refund.member_id, kind=EventKind.PURCHASE, pk__lt=refund.pk)
    if order_id := payload.get("order_id"):
        found = purchases.filter(external_id=str(order_id)).order_by("id")
        # The refund's own source first, should two systems use the same order id.
        return found.filter(source=refund.source).first() or found.first()
    if order_no := payload.get("order_no"):
        return purchases.filter(payload__order_no=str(order_no)).order_by("id").first()
    return None


@transaction.atomic
def _refund_one(refund: MemberEvent, *, now: datetime) -> bool:
    from loyalty.services.points import points_debit, points_reverse

    purchase = refund_purchase(refund)
    if purchase is None:
        return False
    earn = PointsEntry.objects.filter(idempotency_key=earn_key(purchase.pk)).first()
    if earn is None:
        return False
    key = refund_key(refund.pk)
    reason = gettext("Refund of order %(order)s") % {"order": purchase.external_id}
    earlier = _earlier_refund_entries(purchase=purchase, refund=refund)
    whole = refund.amount is None or not purchase.amount or refund.amount >= purchase.amount
    if whole and not earlier.exists():
        if getattr(earn, "reversal", None) is not None:
            return False
        points_reverse(entry=earn, reason=reason, idempotency_key=key, now=now)
        return True
    if getattr(earn, "reversal", None) is not None:
        return False
    share = Decimal(earn.amount) if whole else Decimal(earn.amount) * refund.amount / purchase.amount
    taken = -(earlier.aggregate(points=Sum("amount"))["points"] or 0)
    points = min(int(share.to_integral_value(rounding=ROUND_FLOOR)), earn.amount - taken)
    account = PointsAccount.objects.select_for_update().filter(member_id=refund.member_id).first()
    points = min(points, account.balance if account else 0)
    if points <= 0:
        return False
    points_debit(
        member=refund.member,
        amount=points,
        reason=reason,
        idempotency_key=key,
        kind=EntryKind.ADJUST,
        source_event=refund,
        now=now,
    )
    return True


def _earlier_refund_entries(*, purchase: MemberEvent, refund: MemberEvent):
    order_refunds = MemberEvent.objects.filter(member_id=refund.member_id, kind=EventKind.REFUND).filter(
        Q(payload__order_id=purchase.external_id)
        | (
            Q(payload__order_no=purchase.payload.get("order_no"))
            if isinstance(purchase.payload, dict) and purchase.payload.get("order_no")
            else Q(pk__in=[])
        )
    )
    return PointsEntry.objects.filter(
        member_id=refund.member_id, kind=EntryKind.ADJUST, source_event__in=order_refunds.exclude(pk=refund.pk)
    )
