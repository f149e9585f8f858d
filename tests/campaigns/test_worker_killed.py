"""A real Celery worker SIGKILLed in the middle of dispatch: nothing is lost, and nothing reaches a
member twice, once a worker runs again.

The gateway is a local HTTP server that answers slowly, so the worker is killed while it is
sending a claimed batch. What it had sent and recorded stays sent, with the campaign's points
given; what it had claimed but not
recorded stays `sending` until its claim is old enough to count as stuck, then goes back to the
queue and the restarted worker sends it. At most the one message in flight at the kill can reach
the gateway twice, and then under the same X-CRM-Delivery id, which the gateway drops.
"""

import os
import signal
from collections import Counter
from datetime import time as clock_time
from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone

from campaigns.channels import DELIVERY_HEADER
from campaigns.models import Delivery, DeliveryStatus, OutboxSettings
from campaigns.outbox import STUCK_AFTER, deliveries_plan
from campaigns.tasks import dispatch_deliveries
from loyalty.models import PointsAccount
from tests.campaigns.test_dispatch import Gateway, _configure
from tests.crm.test_celery_worker import _wait_until, start_worker, stop_worker
from tests.factories import MemberFactory
from tests.factories.campaigns import running_campaign

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.celery_worker]

MEMBERS = 12


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_during_dispatch_loses_nothing_and_sends_nothing_twice(tmp_path):
    # No quiet hours (start = end), so the test does not depend on the time of day.
    OutboxSettings.objects.filter(pk=1).update(quiet_start=clock_time(0), quiet_end=clock_time(0))
    members = [MemberFactory() for _ in range(MEMBERS)]
    # Like a congested SMS gateway: each answer takes a while, so that the kill lands mid-batch.
    with Gateway(delays=[0.3] * 4 * MEMBERS) as gateway:
        _configure("wecom", gateway.url)
        campaign = running_campaign(members, channel="wecom", offer_points=10)
        deliveries_plan(campaign=campaign, now=timezone.now())
        deliveries = set(Delivery.objects.filter(campaign=campaign).values_list("pk", flat=True))
        assert len(deliveries) == MEMBERS

        first = start_worker(tmp_path / "first.log")
        try:
            dispatch_deliveries.apply_async(queue=first.queue)
            _wait_until(lambda: len(gateway.requests) >= 4, first)
            os.killpg(first.process.pid, signal.SIGKILL)
            first.process.wait()
        finally:
            stop_worker(first)

        statuses = Counter(Delivery.objects.filter(campaign=campaign).values_list("status", flat=True))
        assert 0 < statuses[DeliveryStatus.SENT] < MEMBERS, statuses  # killed mid-batch
        assert statuses[DeliveryStatus.SENDING] > 0, statuses  # its claim was left behind

        # Ten minutes on, the dead worker's claim counts as stuck; a worker started again on the
        # same queue resets it and sends the rest.
        Delivery.objects.filter(status=DeliveryStatus.SENDING).update(
            claimed_at=F("claimed_at") - STUCK_AFTER - timedelta(minutes=1)
        )
        second = start_worker(tmp_path / "second.log", queue=first.queue)
        try:
            dispatch_deliveries.apply_async(queue=second.queue)
            _wait_until(
                lambda: not Delivery.objects.filter(campaign=campaign).exclude(status=DeliveryStatus.SENT).exists(),
                second,
            )
        finally:
            stop_worker(second)

    received = Counter(int(headers[DELIVERY_HEADER]) for _payload, _body, headers in gateway.requests)
    assert set(received) == deliveries  # nothing lost
    twice = [pk for pk, count in received.items() if count > 1]
    assert len(twice) <= 1, received  # at most the one in flight at the kill, same id for the gateway to drop
    assert max(received.values()) <= 2
    assert Delivery.objects.filter(campaign=campaign).count() == MEMBERS  # one row per member, still
    # Every member got the campaign's 10 points once, also those whose message the killed worker sent.
    balances = dict(PointsAccount.objects.filter(member__in=members).values_list("member_id", "balance"))
    assert balances == {member.pk: 10 for member in members}
