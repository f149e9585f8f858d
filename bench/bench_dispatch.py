"""Benchmark: dispatching the outbox to a local webhook gateway with 2 worker processes (issue 5).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_campaigns .venv/bin/python bench/bench_dispatch.py \
        [--messages 20000] [--workers 2]

Needs the members of bench/bench_campaign_plan.py's database (run that first; it uses the first
--messages members). A local gateway (a threaded HTTP server in its own process on 127.0.0.1,
answering 200 with a message id) stands in for the SMS/WeCom provider. In the same run:
1. baseline: --workers processes POST the same number of signed JSON messages straight to the
   gateway (no database, no outbox): what the gateway and HTTP cost alone;
2. dispatch: --workers processes each run `deliveries_dispatch` (the beat task's service: claim
   under SKIP LOCKED, re-check the campaign is running, render, sign, POST, record) until the
   queue is empty.
Target: >= 500 messages/s with 2 worker processes. Prints messages/s, CPU time of the workers and
the load average, since the machine is shared.
"""

import argparse
import json
import multiprocessing
import os
import sys
import threading
import time
import urllib.request
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings.local")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-a-secret")
os.environ["DJANGO_DEBUG"] = "false"

import django  # noqa: E402

django.setup()

from django.db import connection, connections  # noqa: E402

from campaigns.channels import SIGNATURE_HEADER, sign  # noqa: E402
from campaigns.models import (  # noqa: E402
    Campaign,
    CampaignStatus,
    ChannelConfig,
    Delivery,
    DeliveryStatus,
    MessageTemplate,
    OutboxSettings,
)
from campaigns.outbox import deliveries_dispatch  # noqa: E402
from members.models import Member  # noqa: E402

LOCAL = ZoneInfo("Asia/Shanghai")
SECRET = "bench-secret"
BODY = "亲爱的{{ member.name }}，春季新品已上架，会员专享价等您来。"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real gateways do
    # Headers and body go out as two writes; without this, Nagle's algorithm holds the body until
    # the client's delayed ACK (~40 ms a message), which no real gateway does.
    disable_nagle_algorithm = True

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        answer = b'{"id": "gw"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def gateway(port_queue) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.request_queue_size = 256
    port_queue.put(server.server_port)
    server.serve_forever()


def post_direct(url: str, count: int, offset: int) -> None:
    for i in range(count):
        body = json.dumps(
            {
                "delivery_id": offset + i,
                "channel": "wecom",
                "campaign_id": 1,
                "member_number": f"B{i}",
                "phone": "",
                "text": f"亲爱的会员{i}，春季新品已上架，会员专享价等您来。",
            },
            ensure_ascii=False,
        ).encode()
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json; charset=utf-8", SIGNATURE_HEADER: sign(SECRET, body)},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            response.read()


def dispatch_worker(now: datetime) -> None:
    connections.close_all()
    while deliveries_dispatch(now=now, max_batches=1000).handled:
        pass
    connections.close_all()


def run_processes(target, args_list) -> tuple[float, float]:
    """Wall seconds and the children's CPU seconds (user + system)."""
    before = os.times()
    started = time.perf_counter()
    processes = [multiprocessing.Process(target=target, args=args) for args in args_list]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
        assert process.exitcode == 0, process.exitcode
    wall = time.perf_counter() - started
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    now = datetime.now(LOCAL).replace(hour=11, minute=0, second=0, microsecond=0)

    ports = multiprocessing.Queue()
    server = multiprocessing.Process(target=gateway, args=(ports,), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{ports.get(timeout=10)}/send"

    member_ids = list(Member.objects.order_by("pk").values_list("pk", flat=True)[: args.messages])
    assert len(member_ids) == args.messages, "run bench/bench_campaign_plan.py first"
    Delivery.objects.filter(campaign__name="bench: dispatch").delete()
    Campaign.objects.filter(name="bench: dispatch").delete()
    campaign = Campaign.objects.create(
        name="bench: dispatch",
        channel="wecom",
        category="transactional",
        starts_at=now,
        status=CampaignStatus.RUNNING,
    )
    MessageTemplate.objects.create(campaign=campaign, channel="wecom", language=campaign.language, body=BODY)
    ChannelConfig.objects.update_or_create(
        channel="wecom",
        defaults={"enabled": True, "url": url, "secret": SECRET, "timeout_seconds": 10, "fallback_active": False},
    )
    OutboxSettings.objects.update_or_create(pk=1, defaults={"batch_size": 200})
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO campaigns_delivery (campaign_id, step, member_id, channel, category, status, skip_reason, "
            "scheduled_for, next_attempt_at, deferred, attempts, last_error, provider_id, claim_token, holdout, "
            "created_at, sent_via) SELECT %s, 'main', id, 'wecom', 'transactional', 'queued', '', %s, %s, false, "
            "0, '', '', '', false, %s, '' FROM members_member WHERE id = ANY(%s)",
            [campaign.pk, now, now, now, member_ids],
        )
        cursor.execute("ANALYZE campaigns_delivery")
    connections.close_all()

    print(f"load before: {os.getloadavg()}", flush=True)
    per = args.messages // args.workers
    wall, cpu = run_processes(post_direct, [(url, per, w * per) for w in range(args.workers)])
    base_rate = per * args.workers / wall
    print(
        f"baseline: {per * args.workers:,} direct POSTs in {wall:.1f} s = {base_rate:,.0f} msg/s "
        f"(CPU {cpu:.1f} s; load {os.getloadavg()[0]:.1f})",
        flush=True,
    )
    threading.Event().wait(2)
    wall, cpu = run_processes(dispatch_worker, [(now,) for _ in range(args.workers)])
    sent = Delivery.objects.filter(campaign=campaign, status=DeliveryStatus.SENT).count()
    rate = sent / wall
    print(
        f"dispatch: {sent:,} sent by {args.workers} workers in {wall:.1f} s = {rate:,.0f} msg/s "
        f"(CPU {cpu:.1f} s workers; load {os.getloadavg()[0]:.1f}); {rate / base_rate:.0%} of the baseline; "
        "target >= 500 msg/s",
        flush=True,
    )
    assert sent == args.messages, sent
    assert not Delivery.objects.filter(campaign=campaign).exclude(status=DeliveryStatus.SENT).exists()
    print(f"load after: {os.getloadavg()}")
    server.terminate()


if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    main()
