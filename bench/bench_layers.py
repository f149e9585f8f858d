"""Benchmark: layer recompute (RFM, layers, stages, churn model, tags), incremental run, segment preview.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_layers .venv/bin/python bench/bench_layers.py \
        [--members 1000000] [--events-per-member 10] [--changed 10000] [--loop-sample 2000]

Use a database of its own (createdb it first): it is migrated, and its members and events are
replaced when they do not match --members. In one run:
1. members and events are generated set-based (INSERT … SELECT over generate_series: purchases,
   refunds, check-ins and interactions spread over 400 days), rollups rebuilt, VACUUM ANALYZE;
2. on a fresh database (or with --rebuild) the windowed figures built from every event (the path
   after a window length is edited); "yesterday's" full run as of a day ago; a VACUUM of the
   tables it rewrote (what autovacuum does during the day; this server runs with autovacuum
   off); then the measured full recompute (`layers_recompute_full`) as the nightly run does it,
   moving the windows by one day and rewriting existing score rows, with the time of each step;
3. an incremental recompute after --changed members got a new event;
4. a segment count preview for a typical 3-condition segment (layer, city, check-ins in 30 days);
5. a per-member ORM loop computing the same raw RFM figures for --loop-sample members,
   extrapolated to all members, for the speed-up ratio.
Targets (issue 4): full < 60 s at 1M members / 10M events and >= 50x the loop; incremental for
10,000 members < 2 s; preview < 1 s.
"""

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings.local")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret")
os.environ["DJANGO_DEBUG"] = "false"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Count, Max, Min, Q, Sum  # noqa: E402
from django.utils import timezone  # noqa: E402

from bench.common import cpu_seconds  # noqa: E402
from members.models import EventKind, Member, MemberEvent, MemberTag  # noqa: E402
from members.models_layers import EventWindows, LayerJobRun, MemberScore  # noqa: E402
from members.selectors import member_id_ranges  # noqa: E402
from members.services import member_rollups_rebuild  # noqa: E402
from members.services.layers import layers_recompute_full, layers_recompute_incremental  # noqa: E402
from members.services.segments import segment_preview  # noqa: E402
from members.services.windows import event_windows_rebuild  # noqa: E402

CITIES = ["上海", "北京", "广州", "深圳", "杭州", "成都", "重庆", "武汉", "南京", "西安"]
CHANNELS = ["wecom", "community", "mini_program", "app", "store", "online_shop", "referral", "other"]


def _sql(statement: str, params=None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])


def _cpu_since(before: tuple[float, float]) -> str:
    client, server = cpu_seconds()
    return (
        f" (CPU {client - before[0]:.1f} s client + {server - before[1]:.1f} s server, load {os.getloadavg()[0]:.1f})"
    )


def populate(members: int, events_per_member: int) -> None:
    started = time.perf_counter()
    _sql("TRUNCATE members_member CASCADE")
    cities = "ARRAY[" + ", ".join(f"'{c}'" for c in CITIES) + "]"
    channels = "ARRAY[" + ", ".join(f"'{c}'" for c in CHANNELS) + "]"
    _sql(
        f"""
        INSERT INTO members_member (created_at, updated_at, external_id, name, email, gender, city, channel,
            joined_at, sms_opt_out, email_opt_out, wecom_opt_out, notes, orders_count, total_spent)
        SELECT now(), now(), 'B' || g, '会员' || g, '', 'unknown', ({cities})[1 + g %% 10], ({channels})[1 + g %% 8],
               now() - random() * 700 * interval '1 day', false, false, false, '', 0, 0
        FROM generate_series(1, %s) g
        """,
        [members],
    )
    # Each member gets a random share of the events; kinds weighted like a real log.
    _sql(
        """
        INSERT INTO members_memberevent (member_id, kind, sub_kind, amount, occurred_at, source, external_id,
            payload, recorded_at)
        SELECT m.id + (g %% %s),
               k.kind,
               CASE WHEN k.kind = 'interaction' THEN (ARRAY['view','like','live_watch','article_read'])[1 + g %% 4]
                    ELSE '' END,
               CASE WHEN k.kind IN ('purchase', 'refund') THEN round((20 + random() * 500)::numeric, 2) END,
               now() - power(random(), 2) * 400 * interval '1 day',
               'bench', 'E' || g, '{}'::jsonb, now()
        FROM generate_series(1, %s) g
        CROSS JOIN (SELECT MIN(id) AS id FROM members_member) m
        CROSS JOIN LATERAL (SELECT CASE
            WHEN r < 0.30 THEN 'purchase' WHEN r < 0.33 THEN 'refund' WHEN r < 0.55 THEN 'check_in'
            WHEN r < 0.90 THEN 'interaction' ELSE 'message_read' END AS kind
            FROM (SELECT random() + g * 0 AS r) x) k
        """,
        [members, members * events_per_member],
    )
    for first, last in member_id_ranges():
        member_rollups_rebuild(first_id=first, last_id=last)
    _sql("VACUUM ANALYZE members_member")
    _sql("VACUUM ANALYZE members_memberevent")
    seconds = time.perf_counter() - started
    print(f"populated {members:,} members, {members * events_per_member:,} events in {seconds:.0f} s")


def per_member_loop(sample: int) -> float:
    """The naive way: a few ORM queries and a save per member. Returns seconds per member."""
    now = timezone.now()
    window = now - timedelta(days=365)
    ids = list(Member.objects.order_by("?").values_list("pk", flat=True)[:sample])
    started = time.perf_counter()
    for member in Member.objects.filter(pk__in=ids):
        events = MemberEvent.objects.filter(member=member, occurred_at__gte=window)
        figures = events.aggregate(
            orders=Count("pk", filter=Q(kind=EventKind.PURCHASE)),
            spent=Sum("amount", filter=Q(kind=EventKind.PURCHASE)),
            refunded=Sum("amount", filter=Q(kind=EventKind.REFUND)),
            first=Min("occurred_at", filter=Q(kind=EventKind.PURCHASE)),
            last=Max("occurred_at", filter=Q(kind=EventKind.PURCHASE)),
        )
        MemberScore.objects.update_or_create(
            member=member,
            defaults={
                "frequency": figures["orders"],
                "monetary": (figures["spent"] or Decimal(0)) - (figures["refunded"] or Decimal(0)),
                "recency_days": (now - figures["last"]).days if figures["last"] else None,
            },
        )
    return (time.perf_counter() - started) / len(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--events-per-member", type=int, default=10)
    parser.add_argument("--changed", type=int, default=10_000)
    parser.add_argument("--loop-sample", type=int, default=2_000)
    parser.add_argument("--rebuild", action="store_true", help="rebuild the windowed figures from every event first")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("Run against PostgreSQL (DATABASE_URL).")
    call_command("migrate", verbosity=0)
    if (
        Member.objects.filter(external_id__startswith="B").count() != args.members
        or not MemberEvent.objects.filter(source="bench").exists()
    ):
        populate(args.members, args.events_per_member)
    events = MemberEvent.objects.count()
    print(f"{args.members:,} members, {events:,} events; load {os.getloadavg()[0]:.2f}")

    # Progress is reported after each unit of work; a step ends at its last report.
    step_ends: dict[str, float] = {}

    def progress(run: LayerJobRun) -> None:
        step_ends[run.step] = time.perf_counter()

    # The nightly steady state: yesterday's run moved the windows and wrote every score row a
    # day ago, so tonight's run moves the windows by one day and rewrites rows that exist. On a
    # fresh database (or with --rebuild) the windowed figures are first built from every event:
    # the path taken when a window length is edited.
    now = timezone.now()
    if args.rebuild or not EventWindows.objects.filter(ready=True).exists():
        started, cpu = time.perf_counter(), cpu_seconds()
        event_windows_rebuild(now=now - timedelta(days=2), reason="benchmark")
        print(f"windowed figures rebuilt from every event: {time.perf_counter() - started:.1f} s{_cpu_since(cpu)}")
    started, cpu = time.perf_counter(), cpu_seconds()
    run = layers_recompute_full(now=now - timedelta(days=1))
    print(f"yesterday's run: {time.perf_counter() - started:.1f} s{_cpu_since(cpu)}, {run.rows:,} rows, {run.status}")
    # The day between two nightly runs: autovacuum reclaims the row versions yesterday's run left
    # (the rewrites only stay on their page, as HOT updates, when there is room to reuse).
    started = time.perf_counter()
    for table in (MemberScore, Member, MemberTag):
        _sql(f"VACUUM {table._meta.db_table}")
    print(f"vacuum (not part of the run): {time.perf_counter() - started:.1f} s")

    started, cpu = time.perf_counter(), cpu_seconds()
    run = layers_recompute_full(progress=progress)
    full = time.perf_counter() - started
    print(f"full recompute: {full:.1f} s{_cpu_since(cpu)}, {run.rows:,} rows, status {run.status}")
    previous = started
    for step, ended in step_ends.items():
        print(f"  {step:<28} {ended - previous:6.1f} s")
        previous = ended

    ids = list(Member.objects.order_by("?").values_list("pk", flat=True)[: args.changed])
    from members.services import EventInput, events_ingest

    now = timezone.now()
    events_ingest(
        events=[
            EventInput(
                member_id=pk,
                kind=EventKind.CHECK_IN,
                occurred_at=now,
                source="bench-inc",
                external_id=f"I{now.timestamp()}-{pk}",
            )
            for pk in ids
        ]
    )
    started, cpu = time.perf_counter(), cpu_seconds()
    run = layers_recompute_incremental()
    incremental = time.perf_counter() - started
    print(
        f"incremental recompute for {len(ids):,} changed members: {incremental:.2f} s{_cpu_since(cpu)}, "
        f"{run.rows:,} rows"
    )

    rules = {
        "op": "and",
        "rules": [
            {"field": "value_layer", "operator": "in", "value": ["high", "potential"]},
            {"field": "city", "operator": "eq", "value": "上海"},
            {"field": "event_count", "kind": "check_in", "days": 30, "operator": "gte", "value": 1},
        ],
    }
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        preview = segment_preview(rules=rules)
        timings.append(time.perf_counter() - started)
    print(
        f"segment preview (3 conditions): median {statistics.median(timings) * 1000:.0f} ms, "
        f"count {preview.count:,} ({'exact' if preview.exact else 'estimated'})"
    )

    per_member = per_member_loop(args.loop_sample)
    loop_total = per_member * args.members
    print(
        f"per-member ORM loop: {per_member * 1000:.2f} ms/member over {args.loop_sample:,}, "
        f"extrapolated {loop_total:,.0f} s; set-based full run is {loop_total / full:.0f}x faster"
    )


if __name__ == "__main__":
    main()
