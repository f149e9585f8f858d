"""Benchmark: the health dashboard page with a year of daily snapshots, against a bare view.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_health .venv/bin/python bench/bench_dashboard.py

The database is created if it does not exist and migrated; use a database of its own. In one run:
1. the snapshot table is refilled with --days daily snapshots ending yesterday, plus a few open
   alarms and a suggested task (what the page shows on a bad day);
2. baseline: a bare staff view (staff_member_required, a plain HttpResponse: the same login,
   session and middleware, no template, no query of ours), through the same test Client;
3. the dashboard at ?days=365 and the admin index with its health summary, each through Django's
   test Client as an operator (not a superuser: permissions are checked through the role group):
   server time per request (median of --repeat after warm-ups), CPU time of this process, and
   the number and time of SQL queries.
4. with --members N (0 skips it): the nightly snapshot job and the alarm checks over a behaviour
   log of N members × --events-per-member events spread over 180 days (group joins, exits and
   messages, check-ins, complaints, reads, interactions, purchases), filled set-based once and
   reused while the counts match; baseline: a full COUNT(*) of the event table in the same run.
Target (issue 7): the dashboard with a year of snapshots under 200 ms server time.
Results go to docs/PERFORMANCE.md, section "Issue 7 — health dashboard".
"""

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings.local")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret")
# DEBUG keeps every query in memory and renders slower; measure what production runs.
os.environ["DJANGO_DEBUG"] = "false"
# The test Client sends Host: testserver.
os.environ["DJANGO_ALLOWED_HOSTS"] = "testserver,127.0.0.1,localhost"

import django  # noqa: E402

django.setup()

from django.contrib.admin.views.decorators import staff_member_required  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import path  # noqa: E402
from django.utils import timezone  # noqa: E402

from crm import urls as crm_urls  # noqa: E402
from crm.health.models import Alarm, AlarmKind, DashboardTask, HealthSnapshot  # noqa: E402
from crm.health.services import alarms_check, check_channels, snapshot_take  # noqa: E402
from members.models import Member, MemberEvent  # noqa: E402

TARGET_MS = 200


@staff_member_required
def bare(request):
    return HttpResponse("ok")


# The project's URLs plus the bare baseline view; the bench runs with this as ROOT_URLCONF.
urlpatterns = [*crm_urls.urlpatterns, path("bench/bare/", bare)]


def fill(days: int) -> None:
    today = timezone.localdate()
    now = timezone.now()
    HealthSnapshot.objects.all().delete()
    HealthSnapshot.objects.bulk_create(
        [
            HealthSnapshot(
                day=today - timedelta(days=i),
                members=1_000_000,
                active_members=150_000 + (i * 7919) % 20_000,
                activity_rate=Decimal(15 + (i * 7) % 5) + Decimal("0.37"),
                ltv=Decimal("642.10"),
                average_order_value=Decimal("210.55"),
                ltv_multiple=Decimal("3.05"),
                messages_sent=80_000,
                messages_opened=9_000 + (i * 31) % 2000,
                open_rate=Decimal(11 + (i * 3) % 3) + Decimal("0.25"),
                check_in_members=120_000,
                streak_members=20_000,
                streak_share=Decimal("16.67"),
                group_members=400_000,
                group_exits=9_000 + (i * 13) % 3000,
                exit_rate=Decimal(2 + (i * 5) % 4) + Decimal("0.5"),
                group_messages=40 + (i * 11) % 90,
                complaints=(i * 13) % 25,
                points_liability=250_000_000,
                points_liability_yuan=Decimal("5000000.00"),
                sla_breaches=i % 4,
                computed_at=now,
            )
            for i in range(1, days + 1)
        ]
    )
    Alarm.objects.all().delete()
    quiet = Alarm.objects.create(kind=AlarmKind.QUIET_GROUPS, raised_at=now, last_seen_at=now, measured={"limit": 50})
    task = DashboardTask.objects.create(kind=DashboardTask.Kind.TOPIC_DAY, alarm=quiet, created_at=now)
    quiet.actions = [{"action": "task_created", "task": task.pk}]
    quiet.save(update_fields=["actions"])
    Alarm.objects.create(
        kind=AlarmKind.GROUP_EXITS,
        raised_at=now,
        last_seen_at=now,
        measured={"exit_rate": "8.4"},
        actions=[{"action": "campaigns_paused", "campaigns": [1, 2, 3]}, {"action": "alert_skipped"}],
    )
    Alarm.objects.create(
        kind=AlarmKind.CHANNEL_FAILING,
        subject="sms",
        raised_at=now,
        last_seen_at=now,
        measured={},
        actions=[{"action": "fallback_on", "channel": "sms", "fallback": "wecom"}, {"action": "alert_skipped"}],
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE health_healthsnapshot")


def operator_client() -> Client:
    User = get_user_model()
    user, _ = User.objects.get_or_create(username="bench-operator", defaults={"is_staff": True})
    user.groups.set([Group.objects.get(name="Operator")])
    client = Client()
    client.force_login(user)
    return client


def measure(client: Client, url: str, repeat: int) -> dict:
    for _ in range(3):
        assert client.get(url).status_code == 200, url
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        response = client.get(url)
        walls.append((time.perf_counter() - wall) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
        assert response.status_code == 200
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    return {
        "median_ms": statistics.median(walls),
        "p90_ms": sorted(walls)[int(len(walls) * 0.9) - 1],
        "cpu_ms": statistics.median(cpus),
        "queries": len(queries.captured_queries),
        "sql_ms": sum(float(q["time"]) for q in queries.captured_queries) * 1000,
    }


def fill_log(members: int, events_per_member: int) -> None:
    total = members * events_per_member
    if Member.objects.count() == members and MemberEvent.objects.count() == total:
        print(f"behaviour log reused: {members:,} members, {total:,} events")
        return
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE members_member CASCADE")
    now = timezone.now()
    batch = 10_000
    for first in range(0, members, batch):
        Member.objects.bulk_create(
            [
                Member(external_id=f"H{i:08d}", name="会员", joined_at=now - timedelta(days=200 + i % 500))
                for i in range(first, min(first + batch, members))
            ]
        )
    with connection.cursor() as cursor:
        # Kinds in proportions of a lively community; times spread over 180 days.
        cursor.execute(
            """
            INSERT INTO members_memberevent (member_id, kind, sub_kind, amount, occurred_at, source, external_id,
                payload, recorded_at)
            SELECT m.id + (g %% %s), k.kind, '',
                   CASE WHEN k.kind = 'purchase' THEN round((20 + (g %% 480))::numeric, 2) END,
                   now() - ((g::bigint * 7919) %% 15552000) * interval '1 second',
                   'bench', 'H' || g, '{}'::jsonb, now()
            FROM generate_series(1, %s) g
            CROSS JOIN (SELECT MIN(id) AS id FROM members_member) m
            CROSS JOIN LATERAL (SELECT CASE
                WHEN r < 0.15 THEN 'purchase' WHEN r < 0.35 THEN 'check_in' WHEN r < 0.55 THEN 'interaction'
                WHEN r < 0.70 THEN 'message_read' WHEN r < 0.85 THEN 'group_message'
                WHEN r < 0.93 THEN 'group_join' WHEN r < 0.97 THEN 'group_exit' ELSE 'complaint' END AS kind
                FROM (SELECT ((g::bigint * 2654435761) %% 1000) / 1000.0 AS r) x) k
            """,
            [members, total],
        )
        cursor.execute(
            """
            UPDATE members_member AS m SET orders_count = p.orders, total_spent = p.spent
            FROM (SELECT member_id, COUNT(*) AS orders, SUM(amount) AS spent FROM members_memberevent
                  WHERE kind = 'purchase' GROUP BY member_id) AS p
            WHERE p.member_id = m.id
            """
        )
        cursor.execute("VACUUM ANALYZE members_member, members_memberevent")
    print(f"behaviour log filled: {members:,} members, {total:,} events in {time.perf_counter() - started:.0f} s")


def timed(function, repeat: int = 3) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        walls.append((time.perf_counter() - wall) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
    return statistics.median(walls), statistics.median(cpus)


def measure_jobs(members: int, events_per_member: int) -> None:
    fill_log(members, events_per_member)

    def count_events():
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM members_memberevent")
            cursor.fetchone()

    rows = [
        ("COUNT(*) of the event table (baseline)", count_events),
        ("nightly snapshot (snapshot_take)", snapshot_take),
        ("community alarm checks", lambda: alarms_check()),
        ("channel alarm check", lambda: alarms_check(checks=[check_channels])),
    ]
    results = [(label, *timed(function)) for label, function in rows]
    base = results[0][1]
    print(f"{'job':40} {'median ms':>10} {'CPU ms':>8} {'× count':>8}")
    for label, wall, cpu in results:
        print(f"{label:40} {wall:10.1f} {cpu:8.1f} {wall / base:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365, help="daily snapshots to fill")
    parser.add_argument("--repeat", type=int, default=30, help="timed requests per page (median reported)")
    parser.add_argument("--members", type=int, default=100_000, help="members for the job timings; 0 skips them")
    parser.add_argument("--events-per-member", type=int, default=20)
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    fill(args.days)
    print(f"machine: {platform.node()} · python {platform.python_version()} · load {os.getloadavg()}")
    print(f"snapshots: {HealthSnapshot.objects.count()} · open alarms: {Alarm.objects.count()}")
    with override_settings(ROOT_URLCONF=__name__):
        client = operator_client()
        rows = [
            ("bare staff view (baseline)", "/bench/bare/"),
            ("health dashboard, 1 year", "/staff/health/?days=365"),
            ("health dashboard, 90 days", "/staff/health/"),
            ("admin index with health summary", "/admin/"),
        ]
        results = [(label, measure(client, url, args.repeat)) for label, url in rows]
    base = results[0][1]["median_ms"]
    print(f"{'page':36} {'median ms':>10} {'p90 ms':>8} {'CPU ms':>8} {'× bare':>7} {'queries':>8} {'SQL ms':>7}")
    for label, r in results:
        print(
            f"{label:36} {r['median_ms']:10.1f} {r['p90_ms']:8.1f} {r['cpu_ms']:8.1f} "
            f"{r['median_ms'] / base:7.1f} {r['queries']:8d} {r['sql_ms']:7.1f}"
        )
    year = results[1][1]["median_ms"]
    verdict = "met" if year < TARGET_MS else "MISSED"
    print(f"target: dashboard with a year of snapshots under {TARGET_MS} ms → {year:.1f} ms ({verdict})")
    if args.members:
        measure_jobs(args.members, args.events_per_member)
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
