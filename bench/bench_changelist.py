"""Benchmark: the member changelist at 1,000,000 members, with filters and sorts applied.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_changelist .venv/bin/python bench/bench_changelist.py

The database is created if it does not exist and migrated; use a database of its own. In one run:
1. unless the table already holds exactly --members bench members, it is emptied and filled
   set-based (one INSERT … SELECT over generate_series for members, one for ~1.3 members' worth
   of tags each), then VACUUM ANALYZE;
2. baseline: a plain SELECT COUNT(*) over the member table, and an indexed page of 100
   (ORDER BY joined_at DESC, id DESC LIMIT 100), medians of several runs;
3. the real changelist is requested through Django's test Client as a superuser for several
   filter + sort combinations: server time per page of 100 (median of --repeat after a warm-up),
   the number of queries, the slowest query, and EXPLAIN of every query on the member tables,
   flagging any Seq Scan of members_member.
Target (issue 2): under 150 ms per page, no query that scans the whole member table.
Results go to docs/PERFORMANCE.md.

The machine is shared: before measuring, the run waits up to --wait-quiet seconds for the
1-minute load average to drop below --quiet-load, and prints the load around each scenario.
Besides wall time it reports the CPU time of this (web) process per page, which does not grow
while the process waits for a core, and the time of the page's SQL.
"""

import argparse
import json
import os
import re
import statistics
import sys
import time
from datetime import datetime
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

from django.contrib import admin  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client, RequestFactory  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import reverse  # noqa: E402

from bench.common import ensure_database, machine, server_version  # noqa: E402
from members import selectors  # noqa: E402
from members.models import Member, MemberTag, Tag  # noqa: E402

TARGET_MS = 150
CITIES = [
    "上海", "北京", "广州", "深圳", "杭州", "成都", "重庆", "武汉", "南京", "西安",
    "苏州", "天津", "长沙", "郑州", "东莞", "青岛", "沈阳", "宁波", "昆明", "合肥",
    "佛山", "无锡", "厦门", "福州", "济南", "大连", "哈尔滨", "长春", "温州", "石家庄",
    "南宁", "贵阳", "南昌", "太原", "烟台", "嘉兴", "珠海", "惠州", "徐州", "拉萨",
]  # fmt: skip
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥玲芬芳燕彩春菊兰凤洁梅琳素云莲真环雪荣"
CHANNELS = ["wecom", "community", "mini_program", "app", "store", "online_shop", "referral", "other"]
# (name, share of members carrying it): from very common to rare.
TAGS = [
    ("新客", 0.30), ("复购客", 0.20), ("高价值", 0.10), ("社群达人", 0.08), ("直播观众", 0.15),
    ("生日月", 0.083), ("沉默召回", 0.12), ("门店常客", 0.05), ("首席体验官", 0.001), ("投诉处理中", 0.002),
    ("积分翻倍", 0.25), ("内测用户", 0.01),
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15, help="timed requests per scenario (median reported)")
    parser.add_argument("--refill", action="store_true", help="refill even if the table holds the bench data")
    parser.add_argument("--quiet-load", type=float, default=1.5, help="1-minute load average to wait for")
    parser.add_argument("--wait-quiet", type=int, default=600, help="longest wait for it, in seconds")
    args = parser.parse_args()

    ensure_database()
    print(f"# bench_changelist · {datetime.now():%Y-%m-%d %H:%M} · {machine()}")
    print(f"# PostgreSQL {server_version()} · {args.members:,} members · median of {args.repeat} requests")
    call_command("migrate", verbosity=0, interactive=False)

    if args.refill or not _holds_bench_data(args.members):
        _fill(args.members)
    _print_table_sizes()
    _wait_for_quiet(args.quiet_load, args.wait_quiet)

    count_ms = _median_ms(lambda: _sql(f"SELECT COUNT(*) FROM {Member._meta.db_table}"), 5)
    page_ms = _median_ms(
        lambda: _sql(f"SELECT * FROM {Member._meta.db_table} ORDER BY joined_at DESC, id DESC LIMIT 100"), 15
    )
    print(f"baseline: SELECT COUNT(*) {count_ms:.1f} ms · indexed page of 100 {page_ms:.1f} ms")
    print()

    user = _superuser()
    client = Client()
    client.force_login(user)
    cache.delete_many([selectors.MEMBER_CITIES_CACHE_KEY, selectors.EVENT_SOURCES_CACHE_KEY])
    results = [_measure(client, label, params, args.repeat) for label, params in _scenarios(user)]

    print()
    print(
        "| scenario | median ms | × COUNT(*) | min–max ms | CPU ms | queries | SQL ms | slowest query ms "
        "| Seq Scan of members | load |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in results:
        print(
            f"| {r['label']} | {r['median']:.0f} | {r['median'] / count_ms:.2f} | {r['min']:.0f}–{r['max']:.0f} "
            f"| {r['cpu']:.0f} | {r['queries']} | {r['sql_ms']:.0f} | {r['slowest_ms']:.0f} "
            f"| {', '.join(r['seq_scans']) or 'none'} | {r['load']:.1f} |"
        )
    failed = [r["label"] for r in results if r["median"] >= TARGET_MS or r["seq_scans"]]
    print()
    print(f"target < {TARGET_MS} ms and no Seq Scan: {'met' if not failed else 'NOT met: ' + '; '.join(failed)}")
    sys.exit(1 if failed else 0)


# Data ----------------------------------------------------------------------------------------


def _holds_bench_data(members: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*), MIN(external_id), MAX(external_id) FROM {Member._meta.db_table}")
        count, low, high = cursor.fetchone()
    return count == members and low == _external_id(1) and high == _external_id(members)


def _external_id(n: int) -> str:
    return f"B{n:08d}"


def _fill(members: int) -> None:
    member, tag, member_tag = Member._meta.db_table, Tag._meta.db_table, MemberTag._meta.db_table
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {member_tag}, {tag}, {member} RESTART IDENTITY CASCADE")
        cursor.execute("SELECT setseed(0.42)")
        # Skewed like a real pool: a few big cities and channels, a long tail; 15% never active,
        # 40% never bought (total_spent 0: a long run of equal values for the sort to cope with).
        cursor.execute(
            f"""
            INSERT INTO {member} (created_at, updated_at, external_id, name, phone, email, gender, birthday,
                                  city, channel, joined_at, sms_opt_out, email_opt_out, wecom_opt_out, notes,
                                  last_active_at, last_interaction_at, last_purchase_at, orders_count, total_spent)
            SELECT now(), now(), 'B' || lpad(g::text, 8, '0'),
                   substr(%(surnames)s, 1 + g %% char_length(%(surnames)s), 1)
                     || substr(%(given)s, 1 + (g / 31) %% char_length(%(given)s), 1)
                     || CASE WHEN g %% 3 = 0 THEN ''
                             ELSE substr(%(given)s, 1 + (g / 7) %% char_length(%(given)s), 1) END,
                   '+86139' || lpad(g::text, 8, '0'), '',
                   (ARRAY['unknown', 'female', 'male'])[1 + g %% 3], NULL,
                   (%(cities)s::text[])[1 + floor(power(r_city, 2) * %(city_count)s)::int],
                   (%(channels)s::text[])[1 + floor(power(r_channel, 1.5) * %(channel_count)s)::int],
                   joined, false, false, false, '',
                   active, active, purchase,
                   CASE WHEN purchase IS NULL THEN 0 ELSE orders END,
                   CASE WHEN purchase IS NULL THEN 0 ELSE round((orders * (30 + r_spent * 300))::numeric, 2) END
            FROM (
                SELECT *, CASE WHEN active IS NULL OR r_buyer < 0.40 THEN NULL
                               ELSE active - r_purchase * interval '30 days' END AS purchase
                FROM (
                    -- Subqueries with random() in their output are not flattened by the planner,
                    -- so each member draws its own values once and the outer levels reuse them.
                    SELECT g, r_city, r_channel, r_buyer, r_purchase, r_spent,
                           now() - r_joined * interval '730 days' AS joined,
                           CASE WHEN r_never < 0.15 THEN NULL
                                ELSE now() - power(r_active, 2) * interval '365 days' END AS active,
                           1 + floor(power(r_orders, 3) * 40)::int AS orders
                    FROM (
                        SELECT g, random() AS r_city, random() AS r_channel, random() AS r_joined,
                               random() AS r_never, random() AS r_active, random() AS r_buyer,
                               random() AS r_purchase, random() AS r_orders, random() AS r_spent
                        FROM generate_series(1, %(members)s) AS g
                    ) AS draws
                ) AS dated
            ) AS m
            """,
            {
                "surnames": SURNAMES,
                "given": GIVEN,
                "cities": CITIES,
                "city_count": len(CITIES),
                "channels": CHANNELS,
                "channel_count": len(CHANNELS),
                "members": members,
            },
        )
        print(f"members: {members:,} inserted set-based in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        cursor.execute(
            f"INSERT INTO {tag} (created_at, updated_at, name, kind, description) "
            f"SELECT now(), now(), name, 'manual', '' FROM unnest(%s::text[]) AS name",
            [[name for name, _share in TAGS]],
        )
        cursor.execute(
            f"""
            INSERT INTO {member_tag} (member_id, tag_id, created_at)
            SELECT m.id, t.id, now()
            FROM {member} AS m
            CROSS JOIN (SELECT t.id, s.share FROM {tag} AS t
                        JOIN unnest(%s::text[], %s::float8[]) AS s(name, share) ON s.name = t.name) AS t
            -- A hash of the pair, not random(): the planner would evaluate random() once per tag.
            WHERE (hashint8(m.id * 1000 + t.id)::bigint + 2147483648) / 4294967296.0 < t.share
            """,
            [[name for name, _ in TAGS], [share for _, share in TAGS]],
        )
        print(f"member tags: {cursor.rowcount:,} inserted set-based in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    with connection.cursor() as cursor:
        # VACUUM sets the visibility map, so index-only scans need not visit the heap.
        cursor.execute(f"VACUUM ANALYZE {member}, {tag}, {member_tag}")
    print(f"VACUUM ANALYZE in {time.perf_counter() - started:.1f} s")


def _print_table_sizes() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reltuples::bigint, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class "
            "WHERE relname IN (%s, %s) ORDER BY relname",
            [Member._meta.db_table, MemberTag._meta.db_table],
        )
        for name, rows, size in cursor.fetchall():
            print(f"# {name}: ~{rows:,} rows, {size} with indexes")


# Scenarios -----------------------------------------------------------------------------------


def _scenarios(user) -> list[tuple[str, dict]]:
    # ?o= takes a column's position in the list, after the action checkbox.
    request = RequestFactory().get("/")
    request.user = user
    columns = ["action_checkbox", *admin.site._registry[Member].get_list_display(request)]

    def order(field: str, descending: bool = True) -> str:
        return f"{'-' if descending else ''}{columns.index(field)}"

    tag_ids = dict(Tag.objects.values_list("name", "id"))
    return [
        ("channel=wecom, sort -total_spent", {"channel__exact": "wecom", "o": order("total_spent")}),
        ("city=上海, sort -last_active_at", {"city": "上海", "o": order("last_active")}),
        ("tag 高价值 (10%), default sort", {"tag": tag_ids["高价值"]}),
        ("tag 首席体验官 (0.1%), sort -total_spent", {"tag": tag_ids["首席体验官"], "o": order("total_spent")}),
        ("search by phone", {"q": "+86 139-0012-3456"}),
        ("search name prefix 王", {"q": "王"}),
        ("last active 30–90 days, sort -orders", {"active": "30-90d", "o": order("orders_count")}),
        ("channel=app, sort total_spent ascending", {"channel__exact": "app", "o": order("total_spent", False)}),
        ("city=拉萨 (rare), tag 新客, sort -joined_at", {"city": "拉萨", "tag": tag_ids["新客"]}),
        ("no filter, default sort (-joined_at)", {}),
    ]


def _measure(client: Client, label: str, params: dict, repeat: int) -> dict:
    url = reverse("admin:members_member_changelist")
    for _ in range(2):
        _get(client, url, params)
    timings, cpu = [], []
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        _get(client, url, params)
        timings.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    with CaptureQueriesContext(connection) as captured:
        response = _get(client, url, params)
    queries = captured.captured_queries
    slowest = max(queries, key=lambda q: float(q["time"]))
    seq_scans = sorted({scan for q in queries for scan in _seq_scans_of_members(q["sql"])})
    result = {
        "label": label,
        "median": statistics.median(timings),
        "cpu": statistics.median(cpu),
        "load": os.getloadavg()[0],
        "min": min(timings),
        "max": max(timings),
        "queries": len(queries),
        "slowest_ms": float(slowest["time"]) * 1000,
        "sql_ms": sum(float(q["time"]) for q in queries) * 1000,
        "seq_scans": seq_scans,
        # Read from the page: the test Client records template contexts only when instrumented,
        # which would slow every render it measures.
        "rows": response.content.decode().count('name="_selected_action"'),
        "count": _result_count(response.content.decode()),
    }
    print(
        f"{label}: median {result['median']:.0f} ms, CPU {result['cpu']:.0f} ms, load {result['load']:.1f} "
        f"({result['rows']} rows shown of {result['count']}), "
        f"{result['queries']} queries, slowest {result['slowest_ms']:.1f} ms: {_shorten(slowest['sql'])}"
    )
    return result


def _result_count(page: str) -> str:
    """The count the paginator shows (in any language): the last number of its paragraph."""
    paginator = re.search(r'<p class="paginator">(.*?)</p>', page, re.S)
    numbers = re.findall(r"\d[\d,]*", re.sub(r"<[^>]+>", " ", paginator.group(1))) if paginator else []
    return numbers[-1] if numbers else "?"


def _get(client: Client, url: str, params: dict):
    response = client.get(url, params)
    if response.status_code != 200:
        raise SystemExit(f"{url} {params}: HTTP {response.status_code}")
    return response


def _seq_scans_of_members(sql: str) -> list[str]:
    """'Seq Scan' nodes on the member tables in the plan of `sql` (empty when it has none)."""
    if not sql.lstrip().upper().startswith("SELECT") or "members_" not in sql:
        return []
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    found = []

    def walk(node: dict, under_limit: bool) -> None:
        under_limit = under_limit or node["Node Type"] == "Limit"
        if node["Node Type"] == "Seq Scan" and node.get("Relation Name", "").startswith("members_member"):
            found.append(f"{node['Relation Name']}{' (under a LIMIT)' if under_limit else ''}")
        for child in node.get("Plans", []):
            walk(child, under_limit)

    walk(plan[0]["Plan"], False)
    return found


# Helpers -------------------------------------------------------------------------------------


def _wait_for_quiet(threshold: float, longest: int) -> None:
    deadline = time.monotonic() + longest
    while os.getloadavg()[0] >= threshold and time.monotonic() < deadline:
        time.sleep(10)
    print(f"# load average before measuring: {' / '.join(f'{load:.1f}' for load in os.getloadavg())}")


def _superuser():
    user, _created = get_user_model().objects.get_or_create(
        username="bench-changelist", defaults={"is_staff": True, "is_superuser": True}
    )
    return user


def _sql(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        cursor.fetchall()


def _median_ms(run, repeat: int) -> float:
    run()
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def _shorten(sql: str, limit: int = 160) -> str:
    sql = " ".join(sql.split())
    return sql if len(sql) <= limit else sql[: limit - 1] + "…"


if __name__ == "__main__":
    main()
