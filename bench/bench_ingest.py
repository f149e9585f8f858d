"""Benchmark: behaviour events ingested through members.services.events_ingest.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_ingest .venv/bin/python bench/bench_ingest.py --events 1000000

The database is created if it does not exist, migrated, and its members and events are emptied:
give it a database of its own. Then, in one run:
1. --members members (default: one per 50 events) are inserted set-based (one INSERT … SELECT);
2. --events events are built in memory, ~10% of them replays of earlier ones (partners
   retrying), some in the same batch as their original and most in later batches. As in a live
   feed they arrive roughly in time order and activity is heavy-tailed (a few members produce
   most events); --uniform draws members uniformly and times at random instead, the worst case
   for the rollups (each event lands on a member not touched yet in its batch);
3. baseline: the same rows COPYed into a scratch table with the same columns and no index,
   constraint, conflict handling or rollup (the cheapest way rows get into PostgreSQL);
4. the events go through events_ingest; prints events/s, the ratio to the baseline and a
   consistency check (each event stored once, orders and spend equal to the events').
Target (issue 2): at least 20,000 events/s on PostgreSQL. Figures: docs/PERFORMANCE.md.

The machine is shared: measuring starts once the 1-minute load average is below --quiet-load
(waiting at most --wait-quiet seconds), and besides wall time each step reports the CPU time of
this process and of its PostgreSQL backend, which do not grow while waiting for a core.
"""

import argparse
import atexit
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings.local")
# DEBUG keeps every query in memory, which would distort a benchmark of a million rows.
os.environ["DJANGO_DEBUG"] = "false"
# Ingest enqueues follow-up tasks (events_recorded) naming event ids of this database. They go to
# a throwaway filesystem queue, never to a broker that a real worker (`make run`) consumes.
os.environ["REDIS_URL"] = ""
os.environ["CRM_VAR_DIR"] = tempfile.mkdtemp(prefix="bench_ingest_")
atexit.register(shutil.rmtree, os.environ["CRM_VAR_DIR"], ignore_errors=True)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from bench.common import backend_cpu, ensure_database, machine, server_version  # noqa: E402
from members.models import EventKind, InteractionKind, Member, MemberEvent  # noqa: E402
from members.services import EventInput, events_ingest  # noqa: E402
from members.services.events import INGEST_BATCH_SIZE  # noqa: E402

SCRATCH_TABLE = "bench_ingest_scratch"
# Roughly the mix seed_demo produces: mostly content interactions and check-ins.
KIND_WEIGHTS = {
    EventKind.INTERACTION: 62,
    EventKind.CHECK_IN: 15,
    EventKind.MESSAGE_READ: 8,
    EventKind.PURCHASE: 8,
    EventKind.REFUND: 1,
    EventKind.GROUP_JOIN: 2,
    EventKind.GROUP_EXIT: 1,
    EventKind.INVITE: 1,
    EventKind.UGC: 1,
    EventKind.COMPLAINT: 1,
}
SOURCES = {EventKind.PURCHASE: "shop", EventKind.REFUND: "shop", EventKind.CHECK_IN: "mini_program"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events offered, replays included")
    parser.add_argument(
        "--members", type=int, help="default: one per 50 events, as active as seed_demo's (~90 events in 180 days)"
    )
    parser.add_argument("--replays", type=float, default=0.10, help="share of the events that are replays")
    parser.add_argument("--batch-size", type=int, default=INGEST_BATCH_SIZE)
    parser.add_argument("--uniform", action="store_true", help="members uniformly, times at random")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quiet-load", type=float, default=1.5, help="wait for the 1-minute load to drop below this")
    parser.add_argument("--wait-quiet", type=int, default=900, help="at most this many seconds")
    args = parser.parse_args()
    args.members = args.members or max(1, args.events // 50)

    ensure_database()
    print(f"# bench_ingest · {datetime.now():%Y-%m-%d %H:%M} · {machine()}")
    print(f"# database: {connection.vendor} {server_version()} · batch size {args.batch_size}")
    call_command("migrate", verbosity=0, interactive=False)
    _reset()

    started = time.perf_counter()
    first_id, last_id = _insert_members(args.members)
    print(f"members: {args.members:,} inserted set-based in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    rng = random.Random(args.seed)
    events = _build_events(args.events, args.replays, first_id, last_id, rng, uniform=args.uniform)
    unique = len({(event.source, event.external_id) for event in events})
    touched = _members_touched_per_event(events, args.batch_size)
    print(
        f"events: {len(events):,} built in {time.perf_counter() - started:.1f} s · {len(events) - unique:,} replays · "
        f"{'uniform' if args.uniform else 'time-ordered, heavy-tailed'}: {touched:.2f} member rows updated per event"
    )

    _wait_for_quiet(args.quiet_load, args.wait_quiet)
    with Measure("baseline COPY", len(events)) as baseline:
        _baseline_copy(events)

    with Measure("events_ingest", len(events)) as ingest:
        result = events_ingest(events=events, batch_size=args.batch_size)
    print(f"  created {result.created:,}, duplicates {result.duplicates:,}")
    print(
        f"ingest / COPY: {ingest.wall / baseline.wall:.1f}x the time, {ingest.cpu / baseline.cpu:.1f}x the CPU · "
        f"target 20,000 events/s: {'met' if ingest.rate >= 20_000 else 'NOT met'}"
    )
    _check(events, result)


class Measure:
    """Wall time, and the CPU time of this process and of its PostgreSQL backend.

    The machine is shared: wall time grows while either process waits for a core, CPU time
    does not. The backend's CPU is read from /proc, so it is only known for a local server.
    """

    def __init__(self, label: str, rows: int):
        self.label, self.rows = label, rows

    def __enter__(self) -> "Measure":
        self.load = os.getloadavg()[0]
        self.server_start = backend_cpu()
        self.client_start = time.process_time()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:
            return
        self.wall = time.perf_counter() - self.start
        client = time.process_time() - self.client_start
        server_end = backend_cpu()
        server = 0.0 if math.isnan(server_end) else server_end - self.server_start
        self.cpu = client + server
        self.rate = self.rows / self.wall
        print(
            f"{self.label}: {self.wall:,.1f} s  {self.rate:,.0f} rows/s · CPU {client:.1f} s client + "
            f"{server:.1f} s server = {self.rows / self.cpu:,.0f} rows per CPU-second · "
            f"load {self.load:.1f} -> {os.getloadavg()[0]:.1f}"
        )


def _wait_for_quiet(threshold: float, max_wait: int) -> None:
    """Other benchmarks share the machine: start measuring when the load has settled."""
    waited = 0
    while os.getloadavg()[0] > threshold and waited < max_wait:
        time.sleep(10)
        waited += 10
    print(f"load average {os.getloadavg()[0]:.1f} after waiting {waited} s for < {threshold}")


def _reset() -> None:
    member, event = Member._meta.db_table, MemberEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {SCRATCH_TABLE}")
        cursor.execute(f"TRUNCATE {event}, {member} RESTART IDENTITY CASCADE")
        # Same columns as the event table, nothing else: no index, constraint or default.
        cursor.execute(f"CREATE TABLE {SCRATCH_TABLE} AS SELECT * FROM {event} WHERE 1 = 0")


def _insert_members(count: int) -> tuple[int, int]:
    member = Member._meta.db_table
    joined = datetime.now(ZoneInfo("UTC")) - timedelta(days=180)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {member} (created_at, updated_at, external_id, name, phone, email, gender, city,
                                  channel, joined_at, sms_opt_out, email_opt_out, wecom_opt_out, notes,
                                  orders_count, total_spent)
            SELECT %s, %s, 'B' || n, '会员' || n, NULL, '', 'unknown',
                   CASE n %% 4 WHEN 0 THEN '上海' WHEN 1 THEN '北京' WHEN 2 THEN '杭州' ELSE '成都' END,
                   'wecom', %s, FALSE, FALSE, FALSE, '', 0, 0
            FROM generate_series(1, %s) AS n
            """,
            [joined, joined, joined, count],
        )
        cursor.execute(f"SELECT MIN(id), MAX(id) FROM {member}")
        first_id, last_id = cursor.fetchone()
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {member}")
    return first_id, last_id


def _build_events(
    total: int, replay_share: float, first_id: int, last_id: int, rng: random.Random, *, uniform: bool
) -> list:
    originals = round(total / (1 + replay_share))
    start = datetime.now(ZoneInfo("Asia/Shanghai")) - timedelta(days=180)
    span = 180 * 86_400
    kinds, weights = list(KIND_WEIGHTS), list(KIND_WEIGHTS.values())
    members = range(first_id, last_id + 1)
    if uniform:
        member_ids = [rng.randint(first_id, last_id) for _ in range(originals)]
    else:
        # Log-normal activity: the busiest fifth of the members produce about 70% of the events.
        activity = [rng.lognormvariate(0, 1.5) for _ in members]
        member_ids = rng.choices(members, weights=activity, k=originals)
    sub_kinds = InteractionKind.values
    keyed = []
    event_kinds = rng.choices(kinds, weights=weights, k=originals)
    for number, (kind, member_id) in enumerate(zip(event_kinds, member_ids, strict=True)):
        sub_kind, amount, payload = "", None, {}
        if kind == EventKind.INTERACTION:
            sub_kind = rng.choice(sub_kinds)
            payload = {"content_id": f"C{rng.randint(1, 500):04d}"}
        elif kind in (EventKind.PURCHASE, EventKind.REFUND):
            amount = Decimal(rng.randint(3_900, 89_900)) / 100
            payload = {"order_no": f"SO{number:09d}"}
        # A live feed delivers in about the order things happen, give or take an hour.
        seconds = rng.uniform(0, span) if uniform else number / originals * span - rng.uniform(0, 3_600)
        event = EventInput(
            member_id=member_id,
            kind=kind,
            occurred_at=start + timedelta(seconds=seconds),
            source=SOURCES.get(kind, "wecom"),
            external_id=f"ev{number:09d}",
            sub_kind=sub_kind,
            amount=amount,
            payload=payload,
        )
        keyed.append((float(number), event))
    # A replay arrives some time after its original: often within the same batch, mostly later.
    for _ in range(total - originals):
        number = rng.randrange(originals)
        later = number + min(rng.expovariate(1 / 20_000), originals - number)
        keyed.append((later, keyed[number][1]))
    keyed.sort(key=lambda pair: pair[0])
    return [event for _, event in keyed]


def _members_touched_per_event(events: list, batch_size: int) -> float:
    """Member rows the rollup UPDATEs write per event: distinct members per batch, summed."""
    touched = sum(
        len({event.member_id for event in events[offset : offset + batch_size]})
        for offset in range(0, len(events), batch_size)
    )
    return touched / len(events)


def _baseline_copy(events: list) -> None:
    recorded_at = datetime.now(ZoneInfo("UTC"))
    with transaction.atomic(), connection.cursor() as cursor:
        columns = "member_id, kind, sub_kind, amount, occurred_at, source, external_id, payload, recorded_at"
        with cursor.copy(f"COPY {SCRATCH_TABLE} ({columns}) FROM STDIN") as copy:
            for event in events:
                copy.write_row(
                    (
                        event.member_id,
                        event.kind,
                        event.sub_kind,
                        event.amount,
                        event.occurred_at,
                        event.source,
                        event.external_id,
                        json.dumps(event.payload, ensure_ascii=False),
                        recorded_at,
                    )
                )


def _check(events: list, result) -> None:
    """The log holds each event once and the rollups count each purchase once."""
    unique = {}
    for event in events:
        unique.setdefault((event.source, event.external_id), event)
    purchases = sum(1 for event in unique.values() if event.kind == EventKind.PURCHASE)
    spent = sum(
        (event.amount if event.kind == EventKind.PURCHASE else -event.amount)
        for event in unique.values()
        if event.kind in (EventKind.PURCHASE, EventKind.REFUND)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {MemberEvent._meta.db_table}")
        stored = cursor.fetchone()[0]
        cursor.execute(f"SELECT SUM(orders_count), SUM(total_spent) FROM {Member._meta.db_table}")
        orders, total = cursor.fetchone()
    ok = stored == len(unique) == result.created and orders == purchases and Decimal(total) == spent
    print(
        f"check: {stored:,} events stored, {orders:,} orders, {Decimal(total):,} yuan -> {'ok' if ok else 'MISMATCH'}"
    )
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
