"""Benchmark: points earned for purchase events by loyalty.services.points_earn_backfill.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_earn .venv/bin/python bench/bench_earn.py --events 1000000

The database is created if it does not exist, migrated, and its members, events and ledger are
emptied: give it a database of its own. Then, in one run:
1. --members members and --events purchase events (amounts 1–500 yuan over the last 180 days)
   are inserted set-based; an earn rule of 1 point per yuan and a double-points window over
   one week of the period are created; a tenth of the members hold the Gold tier (1.5×);
2. baseline: one bare INSERT … SELECT of the same entries (amount rounded down, key, expiry)
   into the ledger table, with its indexes and constraints but no rules, multipliers, account
   or balance; then the ledger is emptied again;
3. the backfill: rules, tier multiplier, window, expiry by local day, accounts created and
   locked, entries inserted and balances moved, by ranges of --batch-size event ids;
4. the backfill again (everything is already earned: writes nothing), and a check that each
   event earned once and every balance equals the sum of its entries.
Target (issue 3): at least 20,000 entries/s on PostgreSQL. Figures: docs/PERFORMANCE.md.
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
# DEBUG keeps every query in memory, which would distort a benchmark of a million rows.
os.environ["DJANGO_DEBUG"] = "false"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from bench.common import backend_cpu, ensure_database, members_insert, server_version  # noqa: E402
from loyalty.models import (  # noqa: E402
    EarnRule,
    EarnRuleKind,
    MemberTier,
    PointsAccount,
    PointsEntry,
    PointsMultiplierWindow,
    Tier,
)
from loyalty.services import points_earn_backfill  # noqa: E402
from members.models import Member, MemberEvent  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=50_000)
    args = parser.parse_args()
    ensure_database()
    call_command("migrate", verbosity=0, interactive=False)
    print(f"PostgreSQL {server_version()}, {os.cpu_count()} cores; {args.events:,} purchases, {args.members:,} members")
    now = timezone.now()
    _reset()
    _seed(members=args.members, events=args.events, now=now)

    baseline = _timed("baseline: bare INSERT … SELECT of the entries", args.events, lambda: _baseline(now))
    _empty_ledger()

    result = None

    def backfill():
        nonlocal result
        result = points_earn_backfill(batch_size=args.batch_size, now=now)

    earn = _timed("points_earn_backfill", args.events, backfill)
    rerun = _timed(
        "points_earn_backfill again (nothing to do)",
        args.events,
        lambda: points_earn_backfill(batch_size=args.batch_size, now=now),
    )
    _check(result, args.events)
    cpu_ratio = _cpu_seconds["points_earn_backfill"] / _cpu_seconds["baseline: bare INSERT … SELECT of the entries"]
    print(
        f"backfill: {args.events / earn:,.0f} entries/s, {earn / baseline:.2f}× the baseline's time, "
        f"{cpu_ratio:.2f}× its CPU time (client + backend); re-run {rerun:.1f} s"
    )


def _timed(label: str, rows: int, call) -> float:
    connection.ensure_connection()
    server, cpu, start = backend_cpu(), time.process_time(), time.perf_counter()
    call()
    wall = time.perf_counter() - start
    cpu, server = time.process_time() - cpu, backend_cpu() - server
    _cpu_seconds[label] = cpu + server
    print(
        f"{label}: {wall:,.1f} s, {rows / wall:,.0f} rows/s; CPU: client {cpu:,.1f} s, PostgreSQL backend "
        f"{server:,.1f} s (load {'/'.join(f'{v:.1f}' for v in os.getloadavg())})"
    )
    return wall


_cpu_seconds: dict[str, float] = {}


def _reset() -> None:
    tables = [model._meta.db_table for model in (PointsEntry, PointsAccount, MemberTier, MemberEvent, Member)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"TRUNCATE {', '.join(tables)}, loyalty_pointsallocation, loyalty_tierchange RESTART IDENTITY CASCADE"
        )
    EarnRule.objects.all().delete()
    PointsMultiplierWindow.objects.all().delete()


def _empty_ledger() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"TRUNCATE {PointsEntry._meta.db_table}, {PointsAccount._meta.db_table}, "
            "loyalty_pointsallocation RESTART IDENTITY CASCADE"
        )
        cursor.execute(f"VACUUM ANALYZE {PointsEntry._meta.db_table}")


def _seed(*, members: int, events: int, now: datetime) -> None:
    member, event = Member._meta.db_table, MemberEvent._meta.db_table
    start = now - timedelta(days=180)
    with transaction.atomic(), connection.cursor() as cursor:
        members_insert(cursor, members, prefix="B", at=start)
        # Time order, as a live feed or an import would have recorded them.
        cursor.execute(
            f"""
            INSERT INTO {event} (member_id, kind, sub_kind, amount, occurred_at, source, external_id, payload,
                                 recorded_at)
            SELECT 1 + (n * 7919) %% %s, 'purchase', '', 1 + (n * 104729) %% 50000 / 100.0,
                   %s + (n * INTERVAL '1 second') * (180 * 86400.0 / %s), 'shop', 'o' || n, '{{}}', %s
            FROM generate_series(CAST(1 AS bigint), %s) AS n
            """,
            [members, start, events, now, events],
        )
        gold = Tier.objects.get(code="gold")
        cursor.execute(
            f"""
            INSERT INTO {MemberTier._meta.db_table} (created_at, updated_at, member_id, tier_id, since, valid_until)
            SELECT %s, %s, id, %s, %s, NULL FROM {member} WHERE id %% 10 = 0
            """,
            [now, now, gold.pk, start],
        )
    EarnRule.objects.create(name="消费 1 元得 1 积分", kind=EarnRuleKind.PURCHASE, points=1)
    PointsMultiplierWindow.objects.create(
        name="双倍积分周", starts_at=now - timedelta(days=30), ends_at=now - timedelta(days=23), factor=Decimal(2)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {member}, {event}, {MemberTier._meta.db_table}")


def _baseline(now: datetime) -> None:
    expires = now + timedelta(days=365)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {PointsEntry._meta.db_table} (member_id, kind, amount, reason, source_event_id,
                idempotency_key, expires_at, remaining, created_at)
            SELECT member_id, 'earn', CAST(FLOOR(amount) AS INTEGER), 'bench', id, 'earn:' || CAST(id AS TEXT), %s,
                   CAST(FLOOR(amount) AS INTEGER), %s
            FROM {MemberEvent._meta.db_table} WHERE kind = 'purchase' AND amount >= 1
            """,
            [expires, now],
        )


def _check(result, events: int) -> None:
    entry, account = PointsEntry._meta.db_table, PointsAccount._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*), COUNT(DISTINCT source_event_id), SUM(amount) FROM {entry}")
        count, distinct, points = cursor.fetchone()
        cursor.execute(
            f"""SELECT COUNT(*) FROM {account} a LEFT JOIN (SELECT member_id, SUM(amount) s FROM {entry}
                GROUP BY member_id) e ON e.member_id = a.member_id WHERE a.balance <> COALESCE(e.s, 0)"""
        )
        (drift,) = cursor.fetchone()
    ok = count == distinct == events == result.entries and points == result.points and drift == 0
    print(
        f"check: {count:,} entries for {distinct:,} events, {points:,} points, {drift} drifting accounts: "
        f"{'OK' if ok else 'MISMATCH'}"
    )
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
