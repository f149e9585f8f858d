"""Parallel dispatchers on real PostgreSQL connections never send a delivery twice."""

import threading
from threading import Event

import pytest
from django.core import mail
from django.db import connection, connections, transaction

from campaigns.channels import DELIVERY_HEADER
from campaigns.models import Delivery, DeliveryStatus, OutboxSettings
from campaigns.outbox import deliveries_dispatch, deliveries_plan
from tests.factories import MemberFactory
from tests.factories.campaigns import running_campaign


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_in_parallel_send_each_delivery_once(now):
    members = [MemberFactory(email=f"p{i}@example.com") for i in range(60)]
    deliveries_plan(campaign=running_campaign(members), now=now)
    OutboxSettings.objects.update_or_create(pk=1, defaults={"batch_size": 4})
    start = threading.Barrier(2)
    results, errors = [], []

    def dispatcher():
        try:
            start.wait()
            results.append(deliveries_dispatch(now=now, max_batches=100))
        except Exception as error:  # surfaced below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatcher) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    sent_ids = [m.extra_headers[DELIVERY_HEADER] for m in mail.outbox]
    assert len(sent_ids) == 60
    assert len(set(sent_ids)) == 60
    assert sum(r.sent for r in results) == 60
    assert Delivery.objects.filter(status=DeliveryStatus.SENT).count() == 60


def _wait_until_a_backend_waits_for_a_lock() -> None:
    """Poll pg_stat_activity (bounded) until another connection is blocked on a row lock."""
    with connections["default"].cursor() as cursor:
        for _ in range(500):
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            if cursor.fetchone()[0]:
                return
            Event().wait(0.02)
    raise AssertionError("the second planner never waited for the first")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_caps_hold_when_two_campaigns_are_planned_at_the_same_time(now):
    """The second planner waits for the first to commit, then sees its messages and caps them."""
    members = [MemberFactory() for _ in range(20)]
    first, second = running_campaign(members, channel="in_app"), running_campaign(members, channel="wecom")
    planned, release, errors = Event(), Event(), []

    def plan_first_and_hold():
        try:
            with transaction.atomic():
                deliveries_plan(campaign=first, now=now)
                planned.set()
                release.wait()
        except Exception as error:  # surfaced below
            errors.append(error)
            planned.set()
        finally:
            connection.close()

    def plan_second():
        try:
            deliveries_plan(campaign=second, now=now)
        except Exception as error:  # surfaced below
            errors.append(error)
        finally:
            connection.close()

    holder = threading.Thread(target=plan_first_and_hold)
    holder.start()
    planned.wait()
    waiter = threading.Thread(target=plan_second)
    waiter.start()
    try:
        _wait_until_a_backend_waits_for_a_lock()
    finally:
        release.set()
        holder.join()
        waiter.join()

    assert errors == []
    assert Delivery.objects.filter(campaign=first, status=DeliveryStatus.QUEUED).count() == 20
    assert Delivery.objects.filter(campaign=second, skip_reason="daily_cap").count() == 20
