"""Partner API benchmark (issue 6): batch ingest and single-member reads through gunicorn.

    .venv/bin/python bench/bench_api.py [--members 20000] [--seconds 15] [--ingest-seconds 15]

What it does, all against 127.0.0.1 only and bounded in time:
1. Recreates its own PostgreSQL database (default `bench_api`, Redis db 14), migrates it, seeds members
   M0000001… (a tenth of them, at most 500, with points) and a partner key with every scope and a rate limit
   high enough never to trip (the throttle still counts every request, in Redis every 20).
2. Starts gunicorn with the project's gunicorn.conf.py (2 workers of 2 threads, gthread) on
   production settings plus CRM_API_BENCH_VIEWS=true, which mounts two baselines:
   /api/bench/ping/, a plain Django view returning constant JSON, no database, and
   /api/bench/members-drf/<id>/, the member read done the conventional DRF way (ORM,
   select_related, the output serializer) behind the same key check, scope and throttle.
3. Single-member read: wrk, 32 connections, 2 threads, a random member per request (tier,
   points, layer, stage, badges), also with ?tier_progress=true, and in the same run the same
   load on both baselines; prints requests/s, p50/p95/p99 and the ratios to the ping.
4. Batch ingest: 4 client threads POST pre-built batches of 1,000 new events each to
   /api/v1/events/batch/ for --ingest-seconds; prints events created per second.

Needs PostgreSQL and Redis (DATABASE_URL / REDIS_URL style arguments) and Debian's `wrk`.
Load generator and server share the machine's 2 cores: the figures are for the whole box.
"""

import argparse
import http.client
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

WRK_SCRIPT = r"""
local key = os.getenv("BENCH_API_KEY")
local members = tonumber(os.getenv("BENCH_MEMBERS"))
local mode = os.getenv("BENCH_MODE")
local counter = 1

function setup(thread)
  thread:set("seed", counter)
  counter = counter + 1
end

function init(args)
  math.randomseed(seed * 7919)
end

function request()
  if mode == "ping" then
    return wrk.format("GET", "/api/bench/ping/")
  end
  local path = string.format("/api/v1/members/M%07d/", math.random(1, members))
  if mode == "read-drf" then
    path = string.format("/api/bench/members-drf/M%07d/", math.random(1, members))
  end
  if mode == "read-progress" then
    path = path .. "?tier_progress=true"
  end
  return wrk.format("GET", path, {["Authorization"] = "Api-Key " .. key})
end

function done(summary, latency, requests)
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_ms=%.2f p95_ms=%.2f p99_ms=%.2f non2xx=%d connect=%d read=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.timeout))
end
"""

SEED_SCRIPT = r"""
import json, sys
import django
django.setup()
from django.db import transaction
from crm.models import Partner, Scope
from crm.services import partner_api_key_create
from loyalty.services import points_credit
from members.models import Member

count = int(sys.argv[1])
with transaction.atomic():
    Member.objects.bulk_create(
        [
            Member(external_id=f"M{n:07d}", name=f"会员{n}", city="上海", channel="online_shop")
            for n in range(1, count + 1)
        ],
        batch_size=5000,
    )
for member in Member.objects.filter(pk__in=Member.objects.order_by("pk").values("pk")[: min(count // 10, 500)]):
    points_credit(member=member, amount=500, reason="bench", idempotency_key=f"bench:{member.pk}")
partner = Partner.objects.create(name="bench", rate_limit_per_minute=10_000_000)
_, secret = partner_api_key_create(partner=partner, name="bench", scopes=list(Scope.values))
print(json.dumps({"key": secret}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/bench_api")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--seconds", type=int, default=15, help="duration of each wrk run")
    parser.add_argument("--ingest-seconds", type=int, default=15)
    parser.add_argument("--ingest-clients", type=int, default=4)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: gunicorn.conf.py's)")
    parser.add_argument("--threads", type=int, help="gunicorn threads per worker (default: gunicorn.conf.py's)")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--only", choices=["read", "ingest"], help="run one of the two measurements")
    args = parser.parse_args()
    if urlsplit(args.database_url).hostname not in ("127.0.0.1", "localhost"):
        raise SystemExit("the benchmark runs against 127.0.0.1 only")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")

    env = {
        **os.environ,
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "DJANGO_SETTINGS_MODULE": "crm.settings.production",
        "DJANGO_SECRET_KEY": "bench-only-not-a-secret-" + "x" * 40,
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_LOG_LEVEL": "WARNING",
        "CRM_API_BENCH_VIEWS": "true",
        # Recorded events enqueue loyalty's earn task; no worker runs here, the tasks wait in
        # the bench's Redis database, flushed at the start. The API's work is what is measured.
        "CELERY_TASK_ALWAYS_EAGER": "false",
    }
    started = datetime.now(UTC)
    report: dict = {
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": machine(),
        "load_before": os.getloadavg(),
    }
    print(f"# {report['date']} on {report['machine']}; load {report['load_before']}", flush=True)
    recreate_database(args.database_url)
    run([PYTHON, "manage.py", "migrate", "-v", "0"], env)
    seeded = run([PYTHON, "-c", SEED_SCRIPT, str(args.members)], env)
    key = json.loads(seeded.strip().splitlines()[-1])["key"]
    flush_redis(args.redis_url)

    server = subprocess.Popen(
        [
            str(Path(PYTHON).parent / "gunicorn"),
            "crm.wsgi",
            "--config",
            str(BASE_DIR / "gunicorn.conf.py"),
            *(["--workers", str(args.workers)] if args.workers else []),
            *(["--threads", str(args.threads)] if args.threads else []),
            "--bind",
            f"127.0.0.1:{args.port}",
            "--log-level",
            "warning",
        ],
        cwd=BASE_DIR,
        env=env,
    )
    try:
        wait_for(args.port)
        base = f"http://127.0.0.1:{args.port}"
        wrk_env = {**env, "BENCH_API_KEY": key, "BENCH_MEMBERS": str(args.members)}
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(WRK_SCRIPT)
        if args.only != "ingest":
            modes = ("ping", "read", "read-drf", "read-progress")
            for mode in modes:  # warm every path (connections, caches, imports)
                wrk(base, script.name, mode, 3, args.connections, wrk_env)
            ping, read, drf, progress = (
                wrk(base, script.name, mode, args.seconds, args.connections, wrk_env) for mode in modes
            )
            report.update(ping=ping, read=read, read_drf=drf, read_progress=progress)
            for name, result in (("read", read), ("read_drf", drf), ("read_progress", progress)):
                report[f"{name}_vs_ping"] = round(result["rps"] / ping["rps"], 3)
            print_wrk("bare ping view", ping)
            print_wrk("member read", read)
            print_wrk("member read the conventional DRF way (baseline)", drf)
            print_wrk("member read ?tier_progress=true", progress)
            print(
                f"member read / ping throughput: {report['read_vs_ping']:.2f} (target >= 0.33); "
                f"DRF baseline {report['read_drf_vs_ping']:.2f}; "
                f"with tier progress {report['read_progress_vs_ping']:.2f}",
                flush=True,
            )
        if args.only != "read":
            report["ingest"] = ingest(args, key)
            ing = report["ingest"]
            print(
                f"batch ingest: {ing['events_per_second']:,.0f} events/s created "
                f"({ing['requests']} requests of 1,000, {ing['clients']} clients, {ing['seconds']:.1f} s, "
                f"p50 {ing['p50_ms']:.0f} ms, p95 {ing['p95_ms']:.0f} ms, non-200: {ing['errors']})",
                flush=True,
            )
        report["load_after"] = os.getloadavg()
        print("REPORT " + json.dumps(report), flush=True)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    checks = []
    if "read" in report:
        checks += [report["read"]["p95_ms"] < 50, report["read_vs_ping"] >= 1 / 3]
    if "ingest" in report:
        checks.append(report["ingest"]["events_per_second"] >= 10_000)
    print("targets met" if all(checks) else "targets NOT met", flush=True)
    return 0


def machine() -> str:
    cpu = ""
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores {cpu}, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def run(command: list[str], env: dict) -> str:
    result = subprocess.run(command, cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"failed: {' '.join(command[:3])}")
    return result.stdout


def recreate_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise SystemExit(f"unexpected database name {name!r}")
    admin = f"{parts.scheme}://{parts.netloc}/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {name}")


def flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def wait_for(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/api/bench/ping/")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit("gunicorn did not start")


def wrk(base: str, script: str, mode: str, seconds: int, connections: int, env: dict) -> dict:
    output = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", script, base],
        env={**env, "BENCH_MODE": mode},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    line = next(line for line in output.splitlines() if line.startswith("BENCH "))
    values = dict(item.split("=") for item in line.split()[1:])
    requests, duration = int(values["requests"]), int(values["duration_us"]) / 1e6
    return {
        "rps": round(requests / duration, 1),
        "requests": requests,
        "p50_ms": float(values["p50_ms"]),
        "p95_ms": float(values["p95_ms"]),
        "p99_ms": float(values["p99_ms"]),
        "errors": sum(int(values[name]) for name in ("non2xx", "connect", "read", "timeout")),
    }


def print_wrk(label: str, result: dict) -> None:
    print(
        f"{label}: {result['rps']:,.0f} requests/s, p50 {result['p50_ms']:.1f} ms, p95 {result['p95_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms, errors {result['errors']}",
        flush=True,
    )


def ingest(args, key: str) -> dict:
    """Clients POST pre-built batches of 1,000 new events as fast as the server answers."""
    rng = random.Random(6)
    kinds = [
        ("purchase", "", "88.00"),
        ("check_in", "", None),
        ("interaction", "like", None),
        ("message_read", "", None),
    ]
    occurred = datetime(2026, 6, 1, tzinfo=UTC)
    per_client = max(4, args.ingest_seconds * 4)  # more than a client can send in the time given

    def body(client: int, number: int) -> bytes:
        events = []
        for index in range(1_000):
            kind, sub_kind, amount = kinds[index % len(kinds)]
            events.append(
                {
                    "member_external_id": f"M{rng.randint(1, args.members):07d}",
                    "kind": kind,
                    "sub_kind": sub_kind,
                    "amount": amount,
                    "occurred_at": (occurred + timedelta(seconds=index)).isoformat(),
                    "source": "bench",
                    "external_id": f"c{client}-b{number}-e{index}",
                }
            )
        return json.dumps({"events": events}).encode()

    bodies = [[body(client, number) for number in range(per_client)] for client in range(args.ingest_clients)]
    created = [0] * args.ingest_clients
    latencies: list[float] = []
    errors = [0]
    deadline = time.monotonic() + args.ingest_seconds
    headers = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json"}

    def client(index: int) -> None:
        for payload in bodies[index]:
            if time.monotonic() >= deadline:
                return
            sent = time.monotonic()
            connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=60)
            connection.request("POST", "/api/v1/events/batch/", payload, headers)
            response = connection.getresponse()
            data = response.read()
            latencies.append(time.monotonic() - sent)
            if response.status != 200:
                errors[0] += 1
                continue
            created[index] += json.loads(data)["created"]

    began = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.ingest_clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0

    return {
        "events_per_second": round(sum(created) / elapsed, 1),
        "events": sum(created),
        "requests": len(latencies),
        "clients": args.ingest_clients,
        "seconds": round(elapsed, 2),
        "p50_ms": round(pct(0.50), 1),
        "p95_ms": round(pct(0.95), 1),
        "errors": errors[0],
    }


if __name__ == "__main__":
    sys.exit(main())
