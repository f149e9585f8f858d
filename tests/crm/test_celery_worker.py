"""End to end: a real `celery -A crm worker` process, on the real Redis broker, runs a task
against the database this test wrote to.

The worker is a separate process, so it needs a database that outlives the test's connection:
the data is committed (`transaction=True`) and the worker is pointed at pytest-django's test
database through DATABASE_URL. That rules out SQLite, whose test database lives in memory.
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from members.models import EventKind, Member
from members.services import EventInput, events_ingest
from members.tasks import rebuild_member_rollups
from tests.factories import MemberFactory

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.celery_worker]

WAIT_SECONDS = 60
ROLLUPS = ("last_active_at", "last_interaction_at", "last_purchase_at", "orders_count", "total_spent")


@dataclass
class Worker:
    queue: str
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _test_database_url() -> str:
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{credentials}@{db['HOST']}{port}/{db['NAME']}"


def start_worker(log: Path, queue: str | None = None) -> Worker:
    """Start `celery -A crm worker` on a queue of its own (or `queue`, to restart on the same one)."""
    # A queue of its own, so no other worker on the same Redis (another run, `make run`) takes
    # the task and this worker takes nothing else.
    queue = queue or f"test-{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "crm.settings.test",
        "DATABASE_URL": _test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_TASK_ALWAYS_EAGER": "false",
    }
    command = [
        sys.executable, "-m", "celery", "-A", "crm", "worker", "--pool=solo", "--loglevel=INFO",
        f"--queues={queue}", f"--hostname={queue}-{uuid.uuid4().hex[:4]}@%h", "--without-gossip", "--without-mingle",
        "--without-heartbeat",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Worker(queue, process, log)


def stop_worker(worker: Worker) -> None:
    # Warm shutdown first; the worker must be gone before pytest-django flushes and drops the
    # test database, which it could otherwise hold open.
    if worker.process.poll() is not None:
        return
    worker.process.terminate()
    try:
        worker.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait()


@pytest.fixture
def worker(transactional_db, tmp_path):
    started = start_worker(tmp_path / "worker.log")
    try:
        yield started
    finally:
        stop_worker(started)


def _rollups(member_id: int) -> dict:
    return Member.objects.filter(pk=member_id).values(*ROLLUPS).get()


def _wait_until(condition, worker: Worker) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return
        if worker.process.poll() is not None:
            pytest.fail(f"the worker exited with code {worker.process.returncode}:\n{worker.output()}")
        time.sleep(0.2)
    pytest.fail(f"nothing happened within {WAIT_SECONDS} s; worker output:\n{worker.output()}")


@pytest.mark.django_db(transaction=True)
def test_a_worker_process_rebuilds_drifted_rollups_from_the_log(worker):
    member = MemberFactory()
    when = timezone.now() - timedelta(days=3)
    events_ingest(
        events=[
            EventInput(member.pk, EventKind.PURCHASE, when, "shop", "w-1", amount=Decimal("120.00")),
            EventInput(member.pk, EventKind.REFUND, when + timedelta(hours=1), "shop", "w-2", amount=Decimal("20.00")),
            EventInput(member.pk, EventKind.CHECK_IN, when + timedelta(hours=2), "mini_program", "w-3"),
        ]
    )
    expected = _rollups(member.pk)
    Member.objects.filter(pk=member.pk).update(orders_count=9, total_spent=Decimal("0"), last_active_at=None)

    rebuild_member_rollups.apply_async(queue=worker.queue)

    _wait_until(lambda: _rollups(member.pk) == expected, worker)
    assert expected["orders_count"] == 1
    assert expected["total_spent"] == Decimal("100.00")
    # It really went through the broker to that worker, not through an eager shortcut.
    _wait_until(lambda: "members.tasks.rebuild_member_rollups" in worker.output(), worker)
    assert "succeeded" in worker.output()
