"""Benchmark: the moderation queue at 1,000,000 submissions, bulk decisions, poll results at 1,000,000 votes.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ugc_bench .venv/bin/python bench/bench_ugc.py

Use a database of its own (created if missing, then migrated). In one run:
1. unless it already holds the bench data, 1,000,000 members, 1,000,000 submissions (5% waiting,
   a fifth of those flagged, 85% approved, 10% rejected, 2,000 featured) and one poll with five
   options and 1,000,000 votes are written set-based (INSERT … SELECT over generate_series),
   then VACUUM ANALYZE;
2. baselines: SELECT COUNT(*) over the submissions, and COUNT(*) of the poll's votes;
3. the queue changelist through Django's test Client as a superuser, per filter: median ms of
   --repeat pages, CPU ms, queries, and whether any query Seq Scans the submissions table;
4. approving 1,000 waiting submissions with one set-based call vs one call per submission (the
   per-row baseline), each inside a transaction rolled back afterwards;
5. poll_results() on the poll with 1,000,000 votes vs its COUNT(*) baseline.
"""

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings.local")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret")
os.environ["DJANGO_DEBUG"] = "false"
os.environ["DJANGO_ALLOWED_HOSTS"] = "testserver,127.0.0.1,localhost"

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import reverse  # noqa: E402

from campaigns.ugc.models import Poll, PollOption, PollVote, Submission  # noqa: E402
from campaigns.ugc.selectors import poll_results  # noqa: E402
from campaigns.ugc.services import submissions_approve  # noqa: E402
from members.models import Member  # noqa: E402

N = 1_000_000
REPEAT = int(os.environ.get("BENCH_REPEAT", "9"))
BULK = 1_000


def main() -> None:
    if connection.vendor != "postgresql":
        sys.exit("This benchmark needs PostgreSQL: set DATABASE_URL.")
    call_command("migrate", verbosity=0, interactive=False)
    print(f"# bench_ugc · load {os.getloadavg()[0]:.2f} · {N:,} submissions · median of {REPEAT}")
    if Submission.objects.order_by().count() != N:
        _fill()
    count_ms = _median(lambda: _sql(f"SELECT COUNT(*) FROM {Submission._meta.db_table}"))
    print(f"baseline: SELECT COUNT(*) over submissions {count_ms:.1f} ms")

    user = get_user_model().objects.filter(username="bench").first() or get_user_model().objects.create_superuser(
        "bench", "bench@example.com", "bench-password"
    )
    client = Client()
    client.force_login(user)
    url = reverse("admin:ugc_submission_changelist")
    member_number = Member.objects.order_by("id").values_list("external_id", flat=True)[500]
    scenarios = [
        ("no filter (-id)", {}),
        ("waiting", {"status__exact": "pending"}),
        ("waiting and flagged", {"status__exact": "pending", "flagged__exact": "1"}),
        ("approved", {"status__exact": "approved"}),
        ("featured", {"featured__exact": "1"}),
        ("search a member number", {"q": member_number}),
    ]
    print("| queue changelist | median ms | × COUNT(*) | CPU ms | queries | SQL ms | Seq Scan of submissions |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for label, params in scenarios:
        client.get(url, params)  # warm-up
        walls, cpus = [], []
        for _ in range(REPEAT):
            wall, cpu = time.perf_counter(), time.process_time()
            response = client.get(url, params)
            walls.append((time.perf_counter() - wall) * 1000)
            cpus.append((time.process_time() - cpu) * 1000)
            assert response.status_code == 200
        with CaptureQueriesContext(connection) as queries:
            client.get(url, params)
        scans = {_seq_scan(q["sql"]) for q in queries} - {""}
        sql_ms = sum(float(q["time"]) for q in queries) * 1000
        median = statistics.median(walls)
        print(
            f"| {label} | {median:.0f} | {median / count_ms:.2f} | {statistics.median(cpus):.0f} "
            f"| {len(queries)} | {sql_ms:.0f} | {', '.join(sorted(scans)) or 'none'} |"
        )

    pending = list(Submission.objects.filter(status="pending").order_by("id").values_list("id", flat=True)[: 2 * BULK])
    set_ms = _rolled_back(lambda: submissions_approve(submission_ids=pending[:BULK], actor=user))
    row_ms = _rolled_back(lambda: [submissions_approve(submission_ids=[pk], actor=user) for pk in pending[BULK:]])
    print(
        f"approve {BULK:,} waiting submissions: one set-based call {set_ms:.0f} ms, one call per submission "
        f"(baseline) {row_ms:.0f} ms: {row_ms / set_ms:.1f}× faster"
    )

    poll = Poll.objects.get(title="bench poll")
    votes_ms = _median(lambda: _sql(f"SELECT COUNT(*) FROM {PollVote._meta.db_table} WHERE poll_id = {poll.pk}"))
    results_ms = _median(lambda: poll_results(poll=poll))
    total = poll_results(poll=poll).total
    print(
        f"poll results over {total:,} votes: {results_ms:.0f} ms (baseline COUNT(*) of its votes {votes_ms:.0f} ms, "
        f"× {results_ms / votes_ms:.2f})"
    )
    print(f"# load after: {os.getloadavg()[0]:.2f}")


def _fill() -> None:
    started = time.perf_counter()
    member, submission = Member._meta.db_table, Submission._meta.db_table
    vote, option = PollVote._meta.db_table, PollOption._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {vote}, {option}, {Poll._meta.db_table}, {submission} RESTART IDENTITY CASCADE")
        cursor.execute(f"TRUNCATE {member} RESTART IDENTITY CASCADE")
        cursor.execute(
            f"""INSERT INTO {member} (created_at, updated_at, external_id, name, phone, email, gender, city, channel,
                                      joined_at, sms_opt_out, email_opt_out, wecom_opt_out, notes, orders_count,
                                      total_spent)
                SELECT now(), now(), 'U' || lpad(g::text, 8, '0'), '会员' || g, NULL, '', 'unknown', '上海', 'app',
                       now(), false, false, false, '', 0, 0
                FROM generate_series(1, %s) AS g""",
            [N],
        )
        # Status by position: 5% waiting (a fifth of them flagged), 85% approved, 10% rejected.
        cursor.execute(
            f"""INSERT INTO {submission} (created_at, updated_at, member_id, kind, title, text, rating, source,
                                          external_id, status, flagged, flagged_words, featured, featured_at,
                                          decided_at, decided_by_id, reject_reason)
                SELECT now() - (%(n)s - g) * interval '1 second', now(), 1 + (g::bigint * 7919) %% %(n)s,
                       (ARRAY['text', 'image', 'review', 'proposal'])[1 + g %% 4], '', '第 ' || g || ' 条投稿',
                       CASE WHEN g %% 4 = 2 THEN 1 + g %% 5 END, 'bench', '',
                       CASE WHEN g %% 20 = 0 THEN 'pending' WHEN g %% 10 = 1 THEN 'rejected' ELSE 'approved' END,
                       g %% 100 = 0, CASE WHEN g %% 100 = 0 THEN '["加微信"]'::jsonb ELSE '[]'::jsonb END,
                       g %% 500 = 3, CASE WHEN g %% 500 = 3 THEN now() END,
                       CASE WHEN g %% 20 <> 0 THEN now() END, NULL,
                       CASE WHEN g %% 20 <> 0 AND g %% 10 = 1 THEN '含广告' ELSE '' END
                FROM generate_series(1, %(n)s) AS g""",
            {"n": N},
        )
        poll = Poll.objects.create(title="bench poll", status="open")
        options = [PollOption.objects.create(poll=poll, label=f"口味 {n}", position=n).pk for n in range(5)]
        cursor.execute(
            f"""INSERT INTO {vote} (poll_id, option_id, member_id, source, voted_at)
                SELECT %s, (%s::bigint[])[1 + floor(power(random(), 1.7) * 5)::int], m.id, 'bench', now()
                FROM {member} AS m""",
            [poll.pk, options],
        )
        cursor.execute(f"VACUUM ANALYZE {member}, {submission}, {vote}")
    print(f"filled set-based in {time.perf_counter() - started:.0f} s")


def _seq_scan(sql: str) -> str:
    """ "" when the query reads no submissions by a Seq Scan; "under LIMIT" when it does but stops
    after the limit's rows (the capped count reading 10,001 rows); "full" otherwise."""
    if Submission._meta.db_table not in sql or not sql.lstrip().upper().startswith("SELECT"):
        return ""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql)
        plan = [row[0] for row in cursor.fetchall()]
    if not any(f"Seq Scan on {Submission._meta.db_table}" in line for line in plan):
        return ""
    return "under LIMIT" if any(line.lstrip("-> ").startswith("Limit") for line in plan) else "full"


def _sql(sql: str):
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def _median(call) -> float:
    call()
    times = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _rolled_back(call) -> float:
    with transaction.atomic():
        started = time.perf_counter()
        call()
        elapsed = (time.perf_counter() - started) * 1000
        transaction.set_rollback(True)
    return elapsed


if __name__ == "__main__":
    main()
