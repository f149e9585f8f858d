"""Benchmark: points expiry over a big ledger, badge awards over many members, tier upgrades.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_loyalty .venv/bin/python bench/bench_loyalty.py \
        --members 1000000 --ledger-rows 10000000 --check-ins 5000000

The database is created if it does not exist, migrated, and its members, events and ledger are
emptied: give it a database of its own. Each figure is measured against a bare SQL baseline that
does the same work, in the same run, on the same data:

1. expiry: --ledger-rows earn lots over --members members (a tenth of them past their expiry
   date), each account's balance the sum of its lots. Baseline: three bare statements in one
   transaction (INSERT … SELECT of the expiry entries, UPDATE of the lots, UPDATE … FROM of the
   balances), rolled back. Measured: loyalty.services.points_expire_due, which works by ranges
   of members under their accounts' row locks, with idempotency keys; then a check that every
   balance equals the sum of its entries and a re-run that writes nothing.
2. badge awards: --check-ins check-in events and invites over the members. Baseline: for each
   rule, a bare INSERT … SELECT of the holders (GROUP BY / gaps-and-islands), rolled back.
   Measured: loyalty.services.badges_award for the same badges (ON CONFLICT, exactly once).
3. tier upgrades: --upgrade-members members with purchases; baseline: one bare UPDATE … FROM
   of their tier rows from a grouped sum, rolled back; measured: tiers_upgrade_if_qualified
   (locks, history rows), against the per-member ORM loop it replaced on a sample.

For every figure it prints wall time, the client's CPU time, the PostgreSQL backend's CPU time
(read from /proc: run it on the database's machine) and the load average. Targets (issue 3):
expiry and badge awards within 3× their baseline. Figures: docs/PERFORMANCE.md.
"""

import argparse
import os
import sys
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings.local")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only")
# DEBUG keeps every query in memory, which would distort a benchmark of millions of rows.
os.environ["DJANGO_DEBUG"] = "false"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from bench.common import backend_cpu, ensure_database, members_insert, server_version  # noqa: E402
from loyalty.models import (  # noqa: E402
    Badge,
    BadgeRule,
    MemberBadge,
    MemberTier,
    PointsAccount,
    PointsAllocation,
    PointsEntry,
    Tier,
    TierChange,
)
from loyalty.services import badges_award, points_expire_due, tiers_upgrade_if_qualified  # noqa: E402
from members.models import Member, MemberEvent  # noqa: E402

ENTRY = PointsEntry._meta.db_table
ACCOUNT = PointsAccount._meta.db_table
EVENT = MemberEvent._meta.db_table
MEMBER = Member._meta.db_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--ledger-rows", type=int, default=10_000_000)
    parser.add_argument("--check-ins", type=int, default=5_000_000)
    parser.add_argument("--upgrade-members", type=int, default=100_000)
    parser.add_argument("--loop-sample", type=int, default=500, help="members for the per-member loop figure")
    parser.add_argument("--only", choices=["expiry", "badges", "tiers"], action="append")
    parser.add_argument(
        "--reseed",
        action="store_true",
        help="seed members and ledger again even if the database holds a seed of the same size "
        "(by default an expiry-only run reuses it, undoing the previous run's expiry first)",
    )
    parser.add_argument(
        "--seed-only", action="store_true", help="build the expiry data and stop (no lock needed), measure later"
    )
    args = parser.parse_args()
    ensure_database()
    call_command("migrate", verbosity=0, interactive=False)
    parts = args.only or ["expiry", "badges", "tiers"]
    print(f"PostgreSQL {server_version()}, {os.cpu_count()} cores; {args.members:,} members; load {_load()}")
    now = timezone.now()
    seeded = None if args.reseed or parts != ["expiry"] else _reusable_seed(args.members, args.ledger_rows)
    if seeded is None:
        _reset()
        _timed("seed members", lambda: _seed_members(args.members, now=now))
    else:
        now = seeded
        print(f"reusing the seed of {args.members:,} members and {args.ledger_rows:,} ledger rows made for {now}")
    if "expiry" in parts:
        bench_expiry(
            members=args.members, rows=args.ledger_rows, now=now, reuse=seeded is not None, seed_only=args.seed_only
        )
    if "badges" in parts:
        bench_badges(members=args.members, check_ins=args.check_ins, now=now)
    if "tiers" in parts:
        bench_tiers(members=min(args.upgrade_members, args.members), sample=args.loop_sample, now=now)


# Measuring ---------------------------------------------------------------------------------


class Timing:
    def __init__(self, label: str, wall: float, cpu: float, server_cpu: float, load: str):
        self.label, self.wall, self.cpu, self.server_cpu, self.load = label, wall, cpu, server_cpu, load

    def __str__(self) -> str:
        return (
            f"{self.label}: {self.wall:,.1f} s wall, client CPU {self.cpu:,.1f} s, "
            f"PostgreSQL backend CPU {self.server_cpu:,.1f} s (load {self.load})"
        )


def _load() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def _timed(label: str, call) -> Timing:
    connection.ensure_connection()
    server, cpu, start = backend_cpu(), time.process_time(), time.perf_counter()
    call()
    timing = Timing(label, time.perf_counter() - start, time.process_time() - cpu, backend_cpu() - server, _load())
    print(timing, flush=True)
    return timing


class Rollback(Exception):
    pass


def _timed_rolled_back(label: str, statements: list[tuple[str, list]]) -> Timing:
    """Time bare statements in one transaction, then roll it back so the data stays as it was."""

    def run():
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                for sql, params in statements:
                    cursor.execute(sql, params)
                raise Rollback
        except Rollback:
            pass

    return _timed(label, run)


def _ratio(measured: Timing, baseline: Timing) -> None:
    print(
        f"=> {measured.label} / {baseline.label}: {measured.wall / baseline.wall:.2f}× wall, "
        f"{(measured.cpu + measured.server_cpu) / max(baseline.cpu + baseline.server_cpu, 1e-9):.2f}× CPU "
        "(client + backend)",
        flush=True,
    )


def _vacuum(*tables: str) -> None:
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"VACUUM ANALYZE {table}")


# Expiry ------------------------------------------------------------------------------------


def bench_expiry(*, members: int, rows: int, now: datetime, reuse: bool, seed_only: bool = False) -> None:
    print(f"-- expiry: {rows:,} ledger rows", flush=True)
    if reuse:
        _timed("undo the previous run's expiry", lambda: _undo_expiry(rows=rows))
    else:
        _timed("seed ledger", lambda: _seed_ledger(members=members, rows=rows, now=now))
    if seed_only:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*), COALESCE(SUM(remaining), 0) FROM {ENTRY} WHERE remaining > 0 AND expires_at <= %s", [now]
        )
        due, points = cursor.fetchone()
    print(f"due lots: {due:,} ({points:,} points)", flush=True)
    kind, reason = "expire", "Points expired"
    baseline = _timed_rolled_back(
        "expiry baseline (3 bare statements)",
        [
            (
                f"""INSERT INTO {ENTRY} (member_id, kind, amount, reason, idempotency_key, created_at)
                    SELECT member_id, %s, -remaining, %s, 'expire:' || CAST(id AS TEXT), %s
                    FROM {ENTRY} WHERE remaining > 0 AND expires_at <= %s""",
                [kind, reason, now, now],
            ),
            (f"UPDATE {ENTRY} SET remaining = 0 WHERE remaining > 0 AND expires_at <= %s", [now]),
            (
                f"""UPDATE {ACCOUNT} a SET balance = a.balance + d.points,
                           lifetime_expired = a.lifetime_expired - d.points, updated_at = %s
                    FROM (SELECT member_id, SUM(amount) AS points FROM {ENTRY} WHERE kind = %s GROUP BY member_id) d
                    WHERE a.member_id = d.member_id""",
                [now, kind],
            ),
        ],
    )
    _vacuum(ENTRY, ACCOUNT)
    written = []
    measured = _timed("points_expire_due", lambda: written.append(points_expire_due(now=now)))
    _ratio(measured, baseline)
    rerun = []
    _timed("points_expire_due again (nothing due)", lambda: rerun.append(points_expire_due(now=now)))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT COUNT(*) FROM {ACCOUNT} a LEFT JOIN (SELECT member_id, SUM(amount) s FROM {ENTRY}
                GROUP BY member_id) e ON e.member_id = a.member_id WHERE a.balance <> COALESCE(e.s, 0)"""
        )
        (drift,) = cursor.fetchone()
    ok = written == [due] and rerun == [0] and drift == 0
    print(
        f"check: {written[0]:,} expiry entries for {due:,} due lots, re-run wrote {rerun[0]}, "
        f"{drift} drifting accounts: {'OK' if ok else 'MISMATCH'}",
        flush=True,
    )
    if not ok:
        sys.exit(1)


SEED_TABLE = "bench_loyalty_seed"
SEED_COLUMNS = "members int, ledger_rows bigint, made_for timestamptz"


def _reusable_seed(members: int, rows: int) -> datetime | None:
    """The `now` of a complete seed of this size left by an earlier run, if any."""
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {SEED_TABLE} ({SEED_COLUMNS})")
        cursor.execute(f"SELECT members, ledger_rows, made_for FROM {SEED_TABLE}")
        row = cursor.fetchone()
    return row[2] if row and row[0] == members and row[1] == rows else None


def _undo_expiry(*, rows: int) -> None:
    """Put the seeded ledger back as it was before points_expire_due ran on it."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {PointsAllocation._meta.db_table}")
        cursor.execute(f"DELETE FROM {ENTRY} WHERE id > %s", [rows])
        cursor.execute(f"UPDATE {ENTRY} SET remaining = amount WHERE remaining <> amount")
        cursor.execute(
            f"UPDATE {ACCOUNT} SET balance = lifetime_earned, lifetime_expired = 0 WHERE lifetime_expired <> 0"
        )
    _vacuum(ENTRY, ACCOUNT)


def _seed_ledger(*, members: int, rows: int, now: datetime) -> None:
    """Earn lots, a tenth past their expiry; indexes and constraints are dropped and rebuilt
    around the bulk insert (faster than maintaining them row by row), then balances are summed.
    The seed is recorded, so that a later expiry-only run reuses it (see --reseed)."""
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {SEED_TABLE} ({SEED_COLUMNS})")
        cursor.execute(f"TRUNCATE {SEED_TABLE}")
        # Index builds sort the whole table: with the default 64 MB they spill to disk many times.
        cursor.execute("SET maintenance_work_mem = '1GB'")
        cursor.execute(f"TRUNCATE {ENTRY}, {ACCOUNT}, {PointsAllocation._meta.db_table} RESTART IDENTITY CASCADE")
        rebuild = _drop_indexes_and_constraints(cursor, ENTRY)
        cursor.execute(
            f"""
            INSERT INTO {ENTRY} (member_id, kind, amount, reason, idempotency_key, expires_at, remaining, source_ref,
                                 created_at)
            SELECT 1 + (n * 7919) %% %s, 'earn', a, 'bench', 'bench:' || n,
                   CASE WHEN n %% 10 = 0 THEN %s - (n %% 300) * INTERVAL '1 day'
                        ELSE %s + (n %% 365) * INTERVAL '1 day' END,
                   a, '', %s - (n %% 365) * INTERVAL '1 day'
            FROM (SELECT n, 1 + (n * 104729) %% 500 AS a FROM generate_series(CAST(1 AS bigint), %s) AS n) s
            """,
            [members, now - timedelta(minutes=1), now + timedelta(days=1), now, rows],
        )
        for sql in rebuild:
            cursor.execute(sql)
        cursor.execute(
            f"""
            INSERT INTO {ACCOUNT} (member_id, balance, lifetime_earned, lifetime_redeemed, lifetime_expired,
                                   created_at, updated_at)
            SELECT member_id, SUM(amount), SUM(amount), 0, 0, %s, %s FROM {ENTRY} GROUP BY member_id
            """,
            [now, now],
        )
        cursor.execute("RESET maintenance_work_mem")
    _vacuum(ENTRY, ACCOUNT)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {SEED_TABLE} VALUES (%s, %s, %s)", [members, rows, now])


def _drop_indexes_and_constraints(cursor, table: str) -> list[str]:
    """Drop the table's indexes and constraints except its primary key; return SQL to rebuild them."""
    cursor.execute(
        """
        SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE conrelid = %s::regclass AND contype IN ('u', 'f', 'c')
        """,
        [table],
    )
    constraints = cursor.fetchall()
    cursor.execute(
        """
        SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
        WHERE x.indrelid = %s::regclass AND NOT x.indisprimary
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
        """,
        [table],
    )
    indexes = cursor.fetchall()
    for name, _ in constraints:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    return [definition for _, definition in indexes] + [
        f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}' for name, definition in constraints
    ]


# Badges ------------------------------------------------------------------------------------


BENCH_BADGES = [
    # code, rule, threshold, period days
    ("bench-streak-7", BadgeRule.CHECK_IN_STREAK, 7, None),
    ("bench-check-ins-10", BadgeRule.CHECK_IN_TOTAL, 10, None),
    ("bench-invites-3", BadgeRule.INVITES, 3, None),
    ("bench-top-5", BadgeRule.TOP_ACTIVE, 5, 30),
]


def bench_badges(*, members: int, check_ins: int, now: datetime) -> None:
    print(f"-- badge awards: {members:,} members, {check_ins:,} check-ins", flush=True)
    _timed("seed events", lambda: _seed_events(members=members, check_ins=check_ins, now=now))
    Badge.objects.filter(code__startswith="bench-").delete()
    Badge.objects.update(is_active=False)
    badges = [
        Badge.objects.create(code=code, name=code, rule=rule, threshold=Decimal(n), period_days=days)
        for code, rule, n, days in BENCH_BADGES
    ]
    tz = "Asia/Shanghai"
    day = f"CAST((e.occurred_at AT TIME ZONE '{tz}') AS date)"
    since = now - timedelta(days=30)
    insert = f"INSERT INTO {MemberBadge._meta.db_table} (member_id, badge_id, awarded_at, reason, revoked_reason) "
    baseline = _timed_rolled_back(
        "badge baseline (a bare INSERT … SELECT per badge)",
        [
            (
                insert
                + f"""SELECT member_id, %s, %s, '', '' FROM (
                    SELECT member_id, d - CAST(ROW_NUMBER() OVER (PARTITION BY member_id ORDER BY d) AS int) AS island
                    FROM (SELECT DISTINCT e.member_id, {day} AS d FROM {EVENT} e WHERE e.kind = 'check_in') days
                ) i GROUP BY member_id, island HAVING COUNT(*) >= 7""",
                [badges[0].pk, now],
            ),
            (
                insert
                + f"""SELECT member_id, %s, %s, '', '' FROM (SELECT DISTINCT e.member_id, {day} AS d
                    FROM {EVENT} e WHERE e.kind = 'check_in') days GROUP BY member_id HAVING COUNT(*) >= 10""",
                [badges[1].pk, now],
            ),
            (
                insert
                + f"""SELECT member_id, %s, %s, '', '' FROM {EVENT} WHERE kind = 'invite'
                    GROUP BY member_id HAVING COUNT(*) >= 3""",
                [badges[2].pk, now],
            ),
            (
                insert
                + f"""SELECT member_id, %s, %s, '', '' FROM (
                    SELECT member_id, RANK() OVER (ORDER BY COUNT(*) DESC) AS place FROM {EVENT}
                    WHERE occurred_at > %s AND occurred_at <= %s GROUP BY member_id) r WHERE place <= %s""",
                [badges[3].pk, now, since, now, members * 5 // 100],
            ),
        ],
    )
    _vacuum(MemberBadge._meta.db_table)
    awarded = {}
    measured = _timed("badges_award", lambda: awarded.update(badges_award(now=now, badges=badges)))
    _ratio(measured, baseline)
    again = {}
    _timed("badges_award again (awards nothing)", lambda: again.update(badges_award(now=now, badges=badges)))
    ok = sum(again.values()) == 0 and all(awarded.values())
    print(f"check: awarded {awarded}, again {sum(again.values())}: {'OK' if ok else 'MISMATCH'}", flush=True)
    if not ok:
        sys.exit(1)


def _seed_events(*, members: int, check_ins: int, now: datetime) -> None:
    """Check-ins on consecutive local days per member (so streaks exist), and invites."""
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {EVENT}, {MemberBadge._meta.db_table} RESTART IDENTITY CASCADE")
        rebuild = _drop_indexes_and_constraints(cursor, EVENT)
        # A quarter of the members check in, each on consecutive local days (so streaks exist);
        # a third of them invite, about three times each.
        active = max(1, members // 4)
        cursor.execute(
            f"""
            INSERT INTO {EVENT} (member_id, kind, sub_kind, amount, occurred_at, source, external_id, payload,
                                 recorded_at)
            SELECT 1 + n %% %s, 'check_in', '', NULL,
                   %s - (n / %s) * INTERVAL '1 day' - (n %% 600) * INTERVAL '1 minute', 'app', 'c' || n, '{{}}', %s
            FROM generate_series(CAST(0 AS bigint), %s - 1) AS n
            """,
            [active, now, active, now, check_ins],
        )
        cursor.execute(
            f"""
            INSERT INTO {EVENT} (member_id, kind, sub_kind, amount, occurred_at, source, external_id, payload,
                                 recorded_at)
            SELECT 1 + (n * 7919) %% %s, 'invite', '', NULL, %s - (n %% 90) * INTERVAL '1 day', 'app', 'i' || n,
                   '{{}}', %s
            FROM generate_series(CAST(1 AS bigint), %s) AS n
            """,
            [max(1, members // 3), now, now, members],
        )
        for sql in rebuild:
            cursor.execute(sql)
    _vacuum(EVENT)


# Tier upgrades -----------------------------------------------------------------------------


def bench_tiers(*, members: int, sample: int, now: datetime) -> None:
    print(f"-- tier upgrades: {members:,} members with purchases", flush=True)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {MemberTier._meta.db_table}, {TierChange._meta.db_table} RESTART IDENTITY CASCADE")
        cursor.execute(f"DELETE FROM {EVENT} WHERE kind = 'purchase'")
        cursor.execute(
            f"""
            INSERT INTO {EVENT} (member_id, kind, sub_kind, amount, occurred_at, source, external_id, payload,
                                 recorded_at)
            SELECT 1 + n %% %s, 'purchase', '', 1 + (n * 104729) %% 300000 / 100.0, %s - (n %% 300) * INTERVAL '1 hour',
                   'shop', 'p' || n, '{{}}', %s
            FROM generate_series(CAST(0 AS bigint), %s * 2 - 1) AS n
            """,
            [members, now, now, members],
        )
    _vacuum(EVENT)
    bronze = Tier.objects.order_by("rank").first()
    tiers = list(Tier.objects.order_by("rank"))
    ids = list(range(1, members + 1))
    # Every member on the lowest tier first, as after a migration; the upgrade moves them up.
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {MemberTier._meta.db_table} (created_at, updated_at, member_id, tier_id, since, valid_until)
                SELECT %s, %s, id, %s, %s, %s FROM {MEMBER} WHERE id <= %s""",
            [now, now, bronze.pk, now - timedelta(days=30), now + timedelta(days=335), members],
        )
    _vacuum(MemberTier._meta.db_table)
    cases = " ".join(
        f"WHEN s0.spend >= {tier.min_spend} THEN {tier.pk}" for tier in sorted(tiers, key=lambda t: -t.rank)
    )
    baseline = _timed_rolled_back(
        "tier baseline (one bare UPDATE … FROM)",
        [
            (
                f"""UPDATE {MemberTier._meta.db_table} mt SET tier_id = s.tier_id, since = %s FROM (
                        SELECT member_id, spend, CASE {cases} END AS tier_id FROM (
                            SELECT member_id, SUM(CASE WHEN kind = 'refund' THEN -amount ELSE amount END) AS spend
                            FROM {EVENT} WHERE kind IN ('purchase', 'refund') AND occurred_at > %s AND occurred_at <= %s
                              AND member_id <= %s GROUP BY member_id) s0
                    ) s WHERE mt.member_id = s.member_id AND s.tier_id <> mt.tier_id""",
                [now, now - timedelta(days=365), now, members],
            )
        ],
    )
    _vacuum(MemberTier._meta.db_table)
    from loyalty.selectors import member_qualifying_totals
    from loyalty.services.tiers import _assign  # the per-member path, as tiers_upgrade_if_qualified used to run

    def loop():
        with transaction.atomic():
            for member in Member.objects.filter(pk__in=ids[:sample]).order_by("pk"):
                totals = {}
                for tier in reversed(tiers[1:]):
                    days = tier.qualifying_period_days
                    totals.setdefault(days, member_qualifying_totals(member=member, days=days, now=now))
                    if tier.is_reached(spend=totals[days][0], points=totals[days][1]):
                        _assign(member=member, tier=tier, reason="bench", actor=None, now=now, upgrade_only=True)
                        break
            transaction.set_rollback(True)

    looped = _timed(f"per-member loop, {sample:,} members", loop)
    moved = []
    measured = _timed(
        "tiers_upgrade_if_qualified", lambda: moved.append(tiers_upgrade_if_qualified(member_ids=ids, now=now))
    )
    _ratio(measured, baseline)
    per_member_loop = looped.wall / sample
    print(
        f"=> set-based {members / measured.wall:,.0f} members/s against the loop's {1 / per_member_loop:,.0f}: "
        f"{per_member_loop * members / measured.wall:.0f}× faster; {moved[0]:,} upgrades",
        flush=True,
    )


# Setup -------------------------------------------------------------------------------------


def _reset() -> None:
    tables = [
        ENTRY,
        ACCOUNT,
        PointsAllocation._meta.db_table,
        MemberTier._meta.db_table,
        TierChange._meta.db_table,
        MemberBadge._meta.db_table,
        EVENT,
        MEMBER,
    ]
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {SEED_TABLE}")
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


def _seed_members(count: int, *, now: datetime) -> None:
    start = now - timedelta(days=400)
    with connection.cursor() as cursor:
        members_insert(cursor, count, prefix="L", at=start)
    _vacuum(MEMBER)


if __name__ == "__main__":
    main()
