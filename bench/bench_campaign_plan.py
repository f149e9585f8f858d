"""Benchmark: scheduling a campaign to a 1,000,000-member segment (issue 5).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_campaigns .venv/bin/python bench/bench_campaign_plan.py \
        [--members 1000000] [--repeat 3]

Use a database of its own: it is created if missing and migrated; its members are replaced when
their count does not match --members. The data: every member in one segment; 5% opted out of
WeCom; 1% left the group; 20% already got a promotional message today (daily cap) and 5% three
this week (weekly cap), as deliveries of earlier campaigns.

Each round, in the same run and on the same data, and each rolled back afterwards:
1. baseline: the bare INSERT … SELECT of one queued delivery per segment member (no checks);
2. `deliveries_plan` for a new promotional WeCom campaign with a 10% control group: the same
   insert plus holdout, opt-outs, left-group, daily and weekly caps, each a set-based UPDATE.
Target: plan < 60 s and <= 3x the baseline. Prints wall time, CPU time of this process and of its
PostgreSQL backend, and the load average, since the machine is shared.
"""

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings.local")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret")
os.environ["DJANGO_DEBUG"] = "false"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from bench.common import cpu_seconds, ensure_database  # noqa: E402
from campaigns.models import Campaign, CampaignStatus, Delivery, OutboxSettings  # noqa: E402
from campaigns.outbox import deliveries_plan  # noqa: E402
from members.models import Member  # noqa: E402
from members.models_layers import Segment  # noqa: E402

LOCAL = ZoneInfo("Asia/Shanghai")
SEGMENT_NAME = "bench: everyone"


class Rollback(Exception):
    pass


def _sql(statement: str, params=None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])
        return cursor.rowcount


def prepare(members: int, now: datetime) -> Segment:
    if Member.objects.count() != members:
        print(f"generating {members:,} members …", flush=True)
        started = time.perf_counter()
        for table in ("campaigns_delivery", "campaigns_campaigntransition", "campaigns_messagetemplate"):
            _sql(f"DELETE FROM {table}")
        _sql("DELETE FROM campaigns_campaign WHERE name LIKE 'bench:%%'")
        _sql("DELETE FROM members_segmentmember")
        _sql("DELETE FROM members_segment WHERE name LIKE 'bench:%%'")
        _sql("DELETE FROM members_memberevent")
        _sql("TRUNCATE members_member CASCADE")
        _sql(
            """
            INSERT INTO members_member (created_at, updated_at, external_id, name, email, gender, city, channel,
                joined_at, sms_opt_out, email_opt_out, wecom_opt_out, notes, orders_count, total_spent)
            SELECT now(), now(), 'B' || g, '会员' || g, '', 'unknown', '上海', 'wecom',
                   now() - (g %% 700) * interval '1 day', false, false, g %% 20 = 0, '', 0, 0
            FROM generate_series(1, %s) g
            """,
            [members],
        )
        # 1% left their group (an exit with no join after it).
        _sql(
            """
            INSERT INTO members_memberevent (member_id, kind, sub_kind, amount, occurred_at, source, external_id,
                payload, recorded_at)
            SELECT id, 'group_exit', '', NULL, now() - interval '3 days', 'bench', 'X' || id, '{}'::jsonb, now()
            FROM members_member WHERE id %% 100 = 7
            """
        )
        print(f"  members and events in {time.perf_counter() - started:.1f} s", flush=True)
    segment, _ = Segment.objects.get_or_create(name=SEGMENT_NAME)
    if segment_size(segment) != members:
        _sql("DELETE FROM members_segmentmember WHERE segment_id = %s", [segment.pk])
        _sql(
            "INSERT INTO members_segmentmember (segment_id, member_id, added_at) SELECT %s, id, now() "
            "FROM members_member",
            [segment.pk],
        )
    # Earlier campaigns' promotional messages: 20% today (daily cap), 5% three this week (weekly cap).
    _sql(
        "DELETE FROM campaigns_delivery WHERE campaign_id IN "
        "(SELECT id FROM campaigns_campaign WHERE name LIKE 'bench: earlier%%')"
    )
    _sql("DELETE FROM campaigns_campaign WHERE name LIKE 'bench: earlier%%'")
    earlier = [
        Campaign.objects.create(
            name=f"bench: earlier {i}",
            channel="wecom",
            starts_at=now - timedelta(days=7),
            status=CampaignStatus.FINISHED,
        )
        for i in range(4)
    ]
    history = [
        (earlier[0], now - timedelta(hours=1), "id %% 5 = 1"),
        (earlier[1], now - timedelta(days=2), "id %% 20 = 2"),
        (earlier[2], now - timedelta(days=3), "id %% 20 = 2"),
        (earlier[3], now - timedelta(days=4), "id %% 20 = 2"),
    ]
    for campaign, when, condition in history:
        _sql(
            "INSERT INTO campaigns_delivery (campaign_id, step, member_id, channel, category, status, skip_reason, "
            "scheduled_for, next_attempt_at, deferred, attempts, last_error, provider_id, claim_token, holdout, "
            "created_at, sent_via) "
            f"SELECT %s, 'main', id, 'wecom', 'promotional', 'sent', '', %s, %s, false, 1, '', '', '', false, %s, '' "
            f"FROM members_member WHERE {condition}",
            [campaign.pk, when, when, when],
        )
    _sql("VACUUM ANALYZE members_member")
    _sql("VACUUM ANALYZE members_segmentmember")
    _sql("VACUUM ANALYZE campaigns_delivery")
    return segment


def baseline(campaign: Campaign, segment: Segment, now: datetime) -> float:
    started = time.perf_counter()
    try:
        with transaction.atomic():
            rows = _sql(
                "INSERT INTO campaigns_delivery (campaign_id, step, member_id, channel, category, status, "
                "skip_reason, scheduled_for, next_attempt_at, deferred, attempts, last_error, provider_id, "
                "claim_token, holdout, created_at, sent_via) "
                "SELECT %s, 'main', member_id, 'wecom', 'promotional', 'queued', '', %s, %s, false, 0, '', '', '', "
                "false, %s, '' FROM members_segmentmember WHERE segment_id = %s",
                [campaign.pk, now, now, now, segment.pk],
            )
            elapsed = time.perf_counter() - started
            assert rows == segment_size(segment), rows
            raise Rollback
    except Rollback:
        pass
    return elapsed


def segment_size(segment: Segment) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM members_segmentmember WHERE segment_id = %s", [segment.pk])
        return cursor.fetchone()[0]


def plan(campaign: Campaign, now: datetime):
    started = time.perf_counter()
    try:
        with transaction.atomic():
            result = deliveries_plan(campaign=campaign, now=now)
            elapsed = time.perf_counter() - started
            raise Rollback
    except Rollback:
        pass
    return elapsed, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ensure_database()
    call_command("migrate", verbosity=0)
    now = datetime.now(LOCAL).replace(hour=11, minute=0, second=0, microsecond=0)  # outside the quiet hours
    OutboxSettings.objects.update_or_create(pk=1, defaults={"daily_cap": 1, "weekly_cap": 3})
    segment = prepare(args.members, now)
    Campaign.objects.filter(name="bench: new").delete()
    campaign = Campaign.objects.create(
        name="bench: new",
        channel="wecom",
        segment=segment,
        starts_at=now,
        holdout_percent=10,
        status=CampaignStatus.RUNNING,
    )
    print(f"load before: {os.getloadavg()}", flush=True)
    base_times, plan_times, cpu = [], [], []
    result = None
    for round_ in range(args.repeat):
        before = cpu_seconds()
        base_times.append(baseline(campaign, segment, now))
        base_cpu = cpu_seconds()[1] - before[1]
        before = cpu_seconds()
        seconds, result = plan(campaign, now)
        after = cpu_seconds()
        plan_times.append(seconds)
        cpu.append((after[0] - before[0], after[1] - before[1]))
        print(
            f"round {round_ + 1}: baseline INSERT…SELECT {base_times[-1]:.1f} s (server CPU {base_cpu:.1f} s), "
            f"deliveries_plan {seconds:.1f} s (CPU {cpu[-1][0]:.1f} s client + {cpu[-1][1]:.1f} s server); "
            f"ratio {seconds / base_times[-1]:.2f} wall, {cpu[-1][1] / base_cpu:.2f} server CPU; "
            f"load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    print(f"segment members: {segment_size(segment):,}")
    print(f"plan: planned={result.planned:,} queued={result.queued:,} skipped={result.skipped:,} {result.reasons}")
    base, best = statistics.median(base_times), statistics.median(plan_times)
    print(f"median baseline {base:.1f} s, median plan {best:.1f} s, ratio {best / base:.2f} (target < 60 s, <= 3x)")
    print(f"load after: {os.getloadavg()}")
    assert not Delivery.objects.filter(campaign=campaign).exists()


if __name__ == "__main__":
    main()
