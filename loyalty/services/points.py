"""Every movement of points goes through these functions.

Rules that hold for all of them:
- Points move only by appending a PointsEntry with a unique idempotency key. A repeat with the
  same key returns the first entry and changes nothing, also when both arrive at once.
- The member's PointsAccount row is locked first (select_for_update), then checked, then its
  cached balance is moved with F() in the same transaction; the database refuses a negative
  balance as a backstop.
- A credit is a lot. Debits consume open lots soonest-expiring first, then oldest first: with
  one expiry policy that is plain first-in, first-out, and when staff shorten the policy it
  spends the points that would be lost first. Lots whose expiry has passed are expired before
  anything is spent, so a member never spends points that are already invalid.
- Reversals (refunds, cancelled redemptions, staff corrections) are described on points_reverse.
"""

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import EmptyResultSet
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from crm.core.exceptions import ApplicationError
from loyalty.expiry import expiry_for
from loyalty.models import LOT_SPENDING_ORDER, EntryKind, LoyaltySettings, PointsAccount, PointsAllocation, PointsEntry
from members.models import Member, MemberEvent

logger = logging.getLogger(__name__)

CREDIT_KINDS = (EntryKind.EARN, EntryKind.ADJUST)
DEBIT_KINDS = (EntryKind.REDEEM, EntryKind.ADJUST)
# Due lots per expiry transaction: bounds lock time and, on SQLite, the number of query parameters.
EXPIRY_BATCH_LOTS = 10_000
RECONCILE_BATCH_MEMBERS = 50_000


def expiry_key(lot_id: int) -> str:
    return f"expire:{lot_id}"


@transaction.atomic
def points_credit(
    *,
    member: Member,
    amount: int,
    reason: str,
    idempotency_key: str,
    kind: str = EntryKind.EARN,
    source_event: MemberEvent | None = None,
    expires_at: datetime | None = None,
    actor: AbstractUser | None = None,
    now: datetime | None = None,
) -> PointsEntry:
    """Give a member points as a new lot.

    Without `expires_at` the lot expires by the policy in LoyaltySettings, counted from `now`
    (the time of earning; a backfill passes the purchase time).
    """
    if kind not in CREDIT_KINDS:
        raise ValueError(f"{kind!r} is not a credit kind")
    _require_positive(amount)
    now = now or timezone.now()
    account = _lock_account(member_id=member.pk, create=True)
    if (replay := _replayed(idempotency_key=idempotency_key, member_id=member.pk, kind=kind)) is not None:
        return replay
    if expires_at is None:
        config = LoyaltySettings.load()
        expires_at = expiry_for(earned_at=now, policy=config.expiry_policy, period=config.expiry_period)
    elif expires_at <= now:
        raise ApplicationError(_("Points cannot be given already expired."))
    entry, created = _insert(
        PointsEntry(
            member_id=member.pk,
            kind=kind,
            amount=amount,
            reason=reason,
            source_event=source_event,
            idempotency_key=idempotency_key,
            actor=actor,
            expires_at=expires_at,
            remaining=amount,
        )
    )
    if created:
        _move(account, balance=amount, earned=amount)
    return entry


@transaction.atomic
def points_debit(
    *,
    member: Member,
    amount: int,
    reason: str,
    idempotency_key: str,
    kind: str = EntryKind.REDEEM,
    source_event: MemberEvent | None = None,
    actor: AbstractUser | None = None,
    now: datetime | None = None,
) -> PointsEntry:
    """Take `amount` points from a member, oldest lots first; refuse if the balance is short.

    A redemption must also reach the redemption minimum in LoyaltySettings.
    """
    if kind not in DEBIT_KINDS:
        raise ValueError(f"{kind!r} is not a debit kind")
    _require_positive(amount)
    now = now or timezone.now()
    account = _lock_account(member_id=member.pk, create=False)
    if (replay := _replayed(idempotency_key=idempotency_key, member_id=member.pk, kind=kind)) is not None:
        return replay
    if kind == EntryKind.REDEEM:
        minimum = LoyaltySettings.load().redemption_minimum
        if amount < minimum:
            raise ApplicationError(
                _("At least %(minimum)s points must be redeemed at once.") % {"minimum": minimum},
                extra={"minimum": minimum},
            )
    balance = 0
    if account is not None:
        _expire_member_lots(account, now=now)
        balance = account.balance
    if amount > balance:
        raise ApplicationError(
            _("Not enough points: the balance is %(balance)s, %(amount)s are needed.")
            % {"balance": balance, "amount": amount},
            extra={"balance": balance, "amount": amount},
        )
    entry, created = _insert(
        PointsEntry(
            member_id=member.pk,
            kind=kind,
            amount=-amount,
            reason=reason,
            source_event=source_event,
            idempotency_key=idempotency_key,
            actor=actor,
        )
    )
    if created:
        _consume_lots(entry=entry, points=amount)
        if kind == EntryKind.REDEEM:
            _move(account, balance=-amount, redeemed=amount)
        else:
            _move(account, balance=-amount, earned=-amount)
    return entry


def points_adjust(
    *,
    member: Member,
    amount: int,
    reason: str,
    idempotency_key: str,
    actor: AbstractUser,
    now: datetime | None = None,
) -> PointsEntry:
    """A manual correction by staff: positive gives points, negative takes them.

    Needs a reason and the `loyalty.adjust_points` permission (supervisors).
    """
    _require_adjuster(actor)
    reason = _require_reason(reason)
    if amount == 0:
        raise ApplicationError(_("An adjustment must move at least one point."))
    if amount > 0:
        return points_credit(
            member=member, amount=amount, reason=reason, idempotency_key=idempotency_key,
            kind=EntryKind.ADJUST, actor=actor, now=now,
        )
    return points_debit(
        member=member, amount=-amount, reason=reason, idempotency_key=idempotency_key,
        kind=EntryKind.ADJUST, actor=actor, now=now,
    )


@transaction.atomic
def points_reverse(
    *,
    entry: PointsEntry,
    reason: str,
    idempotency_key: str,
    actor: AbstractUser | None = None,
    now: datetime | None = None,
) -> PointsEntry:
    """Record the entry that cancels `entry`; each entry can be reversed once.

    Reversing a credit (a refunded purchase, a wrong adjustment) removes what is left of its lot
    and, for the part already spent, takes points from the member's other lots, as far as the
    balance goes and never below zero; what cannot be taken back is written off (the reversal's
    amount shows what was taken). Points of the lot that had already expired are not taken twice.

    Reversing a debit (a cancelled redemption) puts the points back into the lots they came from,
    with those lots' expiry dates, so cancelling cannot extend the life of old points. Points
    whose lot has expired in the meantime, or whose lot has itself been reversed (the purchase
    that earned them was refunded), are not given back.

    Expiry entries and reversals cannot be reversed: an expiry mistake is corrected with an
    adjustment. A reversal by a staff member (`actor`) needs the adjust permission; reversals by
    the system (a refund arriving from the shop) pass no actor.
    """
    if actor is not None:
        _require_adjuster(actor)
    reason = _require_reason(reason)
    now = now or timezone.now()
    account = _lock_account(member_id=entry.member_id, create=False)
    replay = _replayed(idempotency_key=idempotency_key, member_id=entry.member_id, kind=EntryKind.REVERSE)
    if replay is not None:
        if replay.reverses_id != entry.pk:
            raise ApplicationError(_("This idempotency key was already used for another movement of points."))
        return replay
    if entry.kind in (EntryKind.EXPIRE, EntryKind.REVERSE):
        raise ApplicationError(_("Expiry and reversal entries cannot be reversed; use an adjustment."))
    if PointsEntry.objects.filter(reverses=entry).exists():
        raise ApplicationError(_("This entry has already been reversed."))
    _expire_member_lots(account, now=now)
    reversal = PointsEntry(
        member_id=entry.member_id,
        kind=EntryKind.REVERSE,
        reason=reason,
        idempotency_key=idempotency_key,
        actor=actor,
        reverses=entry,
    )
    if entry.amount > 0:
        return _reverse_credit(account=account, lot=entry, reversal=reversal)
    return _reverse_debit(account=account, debit=entry, reversal=reversal, now=now)


def points_expire_due(*, now: datetime, batch_size: int = EXPIRY_BATCH_LOTS) -> int:
    """Write an expiry entry for every lot whose expiry has passed; return how many.

    Set-based: per range of lot ids holding about `batch_size` due lots, one INSERT … SELECT of
    expiry entries, one UPDATE of the lots and one UPDATE … FROM of the balances, under the row
    locks of the accounts concerned (taken in id order). Ranges of lot ids rather than of
    members: a range's lots lie on neighbouring pages of the ledger, where a range of members
    has its lots spread over the whole table and so rewrote (and logged) ten thousand pages
    for ten thousand lots. Each range commits on its own, so a long run holds no lock for long
    and a run killed halfway resumes where it stopped. Running it twice expires nothing twice:
    the expired lots have nothing left, and each expiry entry's key (expire:<lot id>) is unique.
    """
    entry = PointsEntry._meta.db_table
    with connection.cursor() as cursor:
        # The id of every batch_size-th due lot (from the index of due lots), and the last one.
        cursor.execute(
            f"""
            SELECT id FROM (
                SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS n, COUNT(*) OVER () AS due
                FROM {entry} WHERE remaining > 0 AND expires_at <= %s
            ) d WHERE (n - 1) %% %s = 0 OR n = due ORDER BY id
            """,
            [connection.ops.adapt_datetimefield_value(now), batch_size],
        )
        bounds = [row[0] for row in cursor.fetchall()]
    expired = 0
    starts = bounds[:-1] or bounds  # the last bound closes the last range
    for index, first_id in enumerate(starts):
        last_id = starts[index + 1] - 1 if index + 1 < len(starts) else bounds[-1]
        with transaction.atomic():
            due_members = PointsEntry.objects.filter(
                id__gte=first_id, id__lte=last_id, remaining__gt=0, expires_at__lte=now
            ).values("member_id")
            member_ids = list(
                PointsAccount.objects.select_for_update()
                .filter(member_id__in=due_members)
                .order_by("pk")
                .values_list("member_id", flat=True)
            )
            if member_ids:
                expired += _expire_lots(member_ids=member_ids, now=now, lots=(first_id, last_id))
    return expired


@dataclass(frozen=True)
class LedgerDrift:
    member_id: int
    balance: int
    ledger_sum: int
    open_lots_sum: int


def points_reconcile(*, batch_size: int = RECONCILE_BATCH_MEMBERS) -> list[LedgerDrift]:
    """Accounts whose cached balance differs from the sum of their entries or of their open lots.

    Reports and logs, never corrects: drift means a bug or a hand edit in the database, and
    someone should look before the cache is trusted or rewritten.
    """
    from members.selectors import member_id_ranges

    account, entry = PointsAccount._meta.db_table, PointsEntry._meta.db_table
    drifts: list[LedgerDrift] = []
    for first_id, last_id in member_id_ranges(size=batch_size):
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                SELECT a.member_id, a.balance, COALESCE(s.ledger_sum, 0), COALESCE(s.open_lots_sum, 0)
                FROM {account} a
                LEFT JOIN (
                    SELECT member_id, SUM(amount) AS ledger_sum, SUM(COALESCE(remaining, 0)) AS open_lots_sum
                    FROM {entry} WHERE member_id BETWEEN %s AND %s GROUP BY member_id
                ) s ON s.member_id = a.member_id
                WHERE a.member_id BETWEEN %s AND %s
                  AND (a.balance <> COALESCE(s.ledger_sum, 0) OR a.balance <> COALESCE(s.open_lots_sum, 0))
                ORDER BY a.member_id
                """,
                [first_id, last_id, first_id, last_id],
            )
            drifts += [LedgerDrift(*row) for row in cursor.fetchall()]
    for drift in drifts:
        logger.warning(
            "points ledger drift: member=%s balance=%s ledger_sum=%s open_lots_sum=%s",
            drift.member_id, drift.balance, drift.ledger_sum, drift.open_lots_sum,
        )
    return drifts


# --- internals ----------------------------------------------------------------------------


def _require_positive(amount: int) -> None:
    if amount <= 0:
        raise ApplicationError(_("The number of points must be positive."))


def _require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError(_("A reason is required."))
    return reason


def _require_adjuster(actor: AbstractUser | None) -> None:
    if actor is None or not actor.has_perm("loyalty.adjust_points"):
        raise ApplicationError(_("Only supervisors may adjust or reverse points by hand."))


def _lock_account(*, member_id: int, create: bool) -> PointsAccount | None:
    accounts = PointsAccount.objects.select_for_update()
    if create:
        # get_or_create re-reads (and so waits for the lock) when a concurrent call created it.
        return accounts.get_or_create(member_id=member_id)[0]
    return accounts.filter(member_id=member_id).first()


def _replayed(*, idempotency_key: str, member_id: int, kind: str) -> PointsEntry | None:
    """The entry already recorded under this key, if any; refuses a key reused for something else."""
    entry = PointsEntry.objects.filter(idempotency_key=idempotency_key).first()
    if entry is not None and (entry.member_id != member_id or entry.kind != kind):
        raise ApplicationError(
            _("This idempotency key was already used for another movement of points."),
            extra={"entry_id": entry.pk},
        )
    return entry


def _insert(entry: PointsEntry) -> tuple[PointsEntry, bool]:
    """Insert `entry`, or return the winner when a concurrent call took the same key first.

    The account lock already serialises calls for one member; the savepoint covers a key that
    two calls for different members race for, which _replayed then refuses.
    """
    try:
        with transaction.atomic():
            entry.save(force_insert=True)
    except IntegrityError:
        winner = _replayed(idempotency_key=entry.idempotency_key, member_id=entry.member_id, kind=entry.kind)
        if winner is None:
            raise
        return winner, False
    return entry, True


def _move(account: PointsAccount, *, balance: int, earned: int = 0, redeemed: int = 0) -> None:
    # An UPDATE with F(): adds to the locked row as stored, and leaves the instance untouched.
    PointsAccount.objects.filter(pk=account.pk).update(
        balance=F("balance") + balance,
        lifetime_earned=F("lifetime_earned") + earned,
        lifetime_redeemed=F("lifetime_redeemed") + redeemed,
        updated_at=timezone.now(),
    )


def _consume_lots(*, entry: PointsEntry, points: int) -> int:
    """Take up to `points` from the member's open lots in spending order; return how many."""
    taken = 0
    emptied: list[int] = []
    allocations: list[PointsAllocation] = []
    lots = PointsEntry.objects.filter(member_id=entry.member_id, remaining__gt=0).order_by(*LOT_SPENDING_ORDER)
    for lot_id, remaining in lots.values_list("id", "remaining"):
        if taken == points:
            break
        take = min(points - taken, remaining)
        taken += take
        allocations.append(PointsAllocation(entry=entry, lot_id=lot_id, amount=take))
        if take == remaining:
            emptied.append(lot_id)
        else:
            PointsEntry.objects.filter(pk=lot_id).update(remaining=F("remaining") - take)
    if emptied:
        PointsEntry.objects.filter(pk__in=emptied).update(remaining=0)
    PointsAllocation.objects.bulk_create(allocations)
    return taken


def _reverse_credit(*, account: PointsAccount, lot: PointsEntry, reversal: PointsEntry) -> PointsEntry:
    lot.refresh_from_db(fields=["remaining"])
    expired = -(
        PointsEntry.objects.filter(idempotency_key=expiry_key(lot.pk)).values_list("amount", flat=True).first() or 0
    )
    spent = lot.amount - lot.remaining - expired
    from_other_lots = min(spent, account.balance - lot.remaining)
    removed = lot.remaining + from_other_lots
    reversal.amount = -removed
    reversal, created = _insert(reversal)
    if created:
        if lot.remaining:
            PointsAllocation.objects.create(entry=reversal, lot=lot, amount=lot.remaining)
            PointsEntry.objects.filter(pk=lot.pk).update(remaining=0)
        if from_other_lots:
            _consume_lots(entry=reversal, points=from_other_lots)
        _move(account, balance=-removed, earned=-removed)
    return reversal


def _reverse_debit(
    *, account: PointsAccount, debit: PointsEntry, reversal: PointsEntry, now: datetime
) -> PointsEntry:
    still_valid = Q(lot__expires_at__isnull=True) | Q(lot__expires_at__gt=now)
    returns = list(
        PointsAllocation.objects.filter(still_valid, entry=debit, lot__reversal__isnull=True)
        .order_by("lot_id")
        .values_list("lot_id", "amount")
    )
    returned = sum(amount for _, amount in returns)
    reversal.amount = returned
    reversal, created = _insert(reversal)
    if created:
        for lot_id, amount in returns:
            PointsEntry.objects.filter(pk=lot_id).update(remaining=F("remaining") + amount)
        PointsAllocation.objects.bulk_create(
            PointsAllocation(entry=reversal, lot_id=lot_id, amount=-amount) for lot_id, amount in returns
        )
        if debit.kind == EntryKind.REDEEM:
            _move(account, balance=returned, redeemed=-returned)
        else:
            _move(account, balance=returned, earned=returned)
    return reversal


def _expire_member_lots(account: PointsAccount, *, now: datetime) -> None:
    """Expire the member's due lots first, so nothing already invalid is spent or reversed."""
    due = PointsEntry.objects.filter(member_id=account.member_id, remaining__gt=0, expires_at__lte=now)
    if due.exists() and _expire_lots(member_ids=[account.member_id], now=now):
        account.refresh_from_db(fields=["balance", "lifetime_expired"])


def _member_filter(member_ids: Sequence[int]) -> tuple[str, list]:
    if connection.vendor == "postgresql":
        return "member_id = ANY(%s)", [list(member_ids)]
    return f"member_id IN ({', '.join(['%s'] * len(member_ids))})", list(member_ids)


def _expire_lots(*, member_ids: Sequence[int], now: datetime, lots: tuple[int, int] | None = None) -> int:
    """Expire the due lots of these members, or, given `lots`, the due lots with ids in that range
    (whose members these are); the caller holds these members' accounts' row locks."""
    entry, account = PointsEntry._meta.db_table, PointsAccount._meta.db_table
    members_sql, members_params = _member_filter(member_ids)
    ops = connection.ops
    if lots is None:
        due_sql = f"remaining > 0 AND expires_at <= %s AND {members_sql}"
        due_params = [ops.adapt_datetimefield_value(now), *members_params]
    else:
        due_sql = "remaining > 0 AND expires_at <= %s AND id BETWEEN %s AND %s"
        due_params = [ops.adapt_datetimefield_value(now), *lots]
    recorded_at = ops.adapt_datetimefield_value(timezone.now())
    kind = EntryKind.EXPIRE.value
    with connection.cursor() as cursor:
        # Entries above this id are the ones this call writes: the locks keep anyone else from
        # writing expiry entries for these members meanwhile.
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {entry}")
        (last_id,) = cursor.fetchone()
        cursor.execute(
            f"""
            INSERT INTO {entry} (member_id, kind, amount, reason, idempotency_key, created_at)
            SELECT member_id, %s, -remaining, %s, 'expire:' || CAST(id AS TEXT), %s
            FROM {entry} WHERE {due_sql}
            ON CONFLICT (idempotency_key) DO NOTHING
            """,
            [kind, gettext("Points expired"), recorded_at, *due_params],
        )
        written = cursor.rowcount
        if not written:
            return 0
        # A probe of the unique key per due lot; an IN (subquery) over the new entries made
        # PostgreSQL compare every due lot with every new entry (80× the bare statements' time).
        cursor.execute(
            f"""
            UPDATE {entry} SET remaining = 0
            WHERE {due_sql} AND EXISTS (
                SELECT 1 FROM {entry} x
                WHERE x.idempotency_key = 'expire:' || CAST({entry}.id AS TEXT) AND x.id > %s
            )
            """,
            [*due_params, last_id],
        )
        cursor.execute(
            f"""
            UPDATE {account} SET balance = {account}.balance + d.points,
                   lifetime_expired = {account}.lifetime_expired - d.points,
                   updated_at = %s
            FROM (
                SELECT member_id, SUM(amount) AS points FROM {entry}
                WHERE kind = %s AND id > %s AND {members_sql} GROUP BY member_id
            ) AS d
            WHERE {account}.member_id = d.member_id
            """,
            [recorded_at, kind, last_id, *members_params],
        )
    return written


# Members per transaction of points_credit_bulk: bounds lock time and the size of each statement.
CREDIT_BULK_CHUNK_MEMBERS = 20_000


def points_credit_bulk(
    *,
    members: QuerySet,
    amount: int,
    reason: str,
    idempotency_prefix: str,
    source_ref: str = "",
    kind: str = EntryKind.EARN,
    actor: AbstractUser | None = None,
    now: datetime | None = None,
    chunk_size: int = CREDIT_BULK_CHUNK_MEMBERS,
    on_progress: Callable[[int, int, int], None] | None = None,
) -> int:
    """Give `amount` points to every member of `members`, once each; return how many were credited.

    `members` is a queryset of members or of member ids (one column, e.g. `.values("member_id")`
    of events; duplicates are fine). Each member's entry has the key `<idempotency_prefix>:<id>`,
    so a repeat (a retried task, a double click) credits nobody twice and one that stopped
    halfway credits the rest. Expiry follows the LoyaltySettings policy, as in points_credit.

    Set-based, in ranges of member ids, each in its own transaction: missing accounts are
    created, the accounts are locked in member-id order, one INSERT … SELECT … ON CONFLICT
    (idempotency_key) DO NOTHING RETURNING writes the entries and one UPDATE … FROM moves the
    cached balances of exactly the members it wrote. `on_progress(credited, done_through_id,
    last_id)` is called after each range.
    """
    if kind not in CREDIT_KINDS:
        raise ValueError(f"{kind!r} is not a credit kind")
    _require_positive(amount)
    reason = _require_reason(reason)
    idempotency_prefix = (idempotency_prefix or "").strip()
    if not idempotency_prefix or len(idempotency_prefix) > 100:
        raise ApplicationError(_("An idempotency key prefix of 1 to 100 characters is required."))
    now = now or timezone.now()
    config = LoyaltySettings.load()
    expires_at = expiry_for(earned_at=now, policy=config.expiry_policy, period=config.expiry_period)

    ops = connection.ops
    member_table = Member._meta.db_table
    if members.model is Member and not members.query.values_select:
        members = members.values("pk")
    # The range of each chunk also narrows the given query itself, so that an index on its member
    # column (a ticket's or a segment's members) serves each chunk instead of a full scan.
    values = members.query.values_select
    column = values[0] if len(values) == 1 and not members.query.annotation_select else None

    def wanted(first_id: int, last_id: int) -> tuple[str, list]:
        """The wanted members that exist, once each, within a range of ids."""
        narrowed = members.filter(**{f"{column}__gte": first_id, f"{column}__lte": last_id}) if column else members
        sql, params = narrowed.query.sql_with_params()
        return (
            f"SELECT m.id FROM {member_table} m WHERE m.id IN ({sql}) AND m.id BETWEEN %s AND %s",
            [*params, first_id, last_id],
        )

    try:
        bounds_sql, bounds_params = wanted(0, 2**62)
    except EmptyResultSet:  # e.g. .none() or an empty pk__in list
        return 0
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT MIN(id), MAX(id) FROM ({bounds_sql}) w", bounds_params)
        low, high = cursor.fetchone()
    if low is None:
        return 0
    stamp = ops.adapt_datetimefield_value(now)
    entry_values = [
        kind, amount, reason, f"{idempotency_prefix}:", actor.pk if actor else None,
        ops.adapt_datetimefield_value(expires_at), amount, source_ref, stamp,
    ]
    credited = 0
    for first_id in range(low, high + 1, chunk_size):
        last_id = min(first_id + chunk_size - 1, high)
        wanted_sql, wanted_params = wanted(first_id, last_id)
        with transaction.atomic():
            credited += _credit_range(
                wanted_sql=wanted_sql, wanted_params=wanted_params, entry_values=entry_values,
                amount=amount, stamp=stamp,
            )
        if on_progress is not None:
            on_progress(credited, last_id, high)
    return credited


def _credit_range(*, wanted_sql: str, wanted_params: list, entry_values: list, amount: int, stamp) -> int:
    entry, account = PointsEntry._meta.db_table, PointsAccount._meta.db_table
    postgres = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {account} (member_id, balance, lifetime_earned, lifetime_redeemed, lifetime_expired,
                                   created_at, updated_at)
            SELECT id, 0, 0, 0, 0, %s, %s FROM ({wanted_sql}) w
            WHERE true
            ON CONFLICT (member_id) DO NOTHING
            """,
            [stamp, stamp, *wanted_params],
        )
        if postgres:
            # Row locks in member-id order, as every other writer of several accounts takes them.
            cursor.execute(
                f"""
                SELECT COUNT(*) FROM (
                    SELECT 1 FROM {account} WHERE member_id IN ({wanted_sql}) ORDER BY member_id FOR UPDATE
                ) locked
                """,
                wanted_params,
            )
        # SQLite: the INSERT above already holds the database's single write lock. ("WHERE true"
        # tells SQLite's parser that ON starts the conflict clause, not a join.)
        insert_sql = f"""
            INSERT INTO {entry} (member_id, kind, amount, reason, idempotency_key, actor_id, expires_at,
                                 remaining, source_ref, created_at)
            SELECT id, %s, %s, %s, %s || CAST(id AS TEXT), %s, %s, %s, %s, %s FROM ({wanted_sql}) w
            WHERE true
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING member_id
        """
        move_sql = f"""
            balance = {account}.balance + %s, lifetime_earned = {account}.lifetime_earned + %s, updated_at = %s
        """
        if postgres:
            cursor.execute(
                f"""
                WITH written AS ({insert_sql})
                UPDATE {account} SET {move_sql} FROM written WHERE {account}.member_id = written.member_id
                """,
                [*entry_values, *wanted_params, amount, amount, stamp],
            )
            return cursor.rowcount
        cursor.execute(insert_sql, [*entry_values, *wanted_params])
        written = [member_id for (member_id,) in cursor.fetchall()]
        if written:
            cursor.execute(
                f"""
                UPDATE {account} SET {move_sql}
                FROM (SELECT value AS member_id FROM json_each(%s)) AS written
                WHERE {account}.member_id = written.member_id
                """,
                [amount, amount, stamp, json.dumps(written)],
            )
        return len(written)
