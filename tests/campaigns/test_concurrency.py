"""Parallel dispatchers on real PostgreSQL connections never send a delivery twice."""

import threading

import pytest
from django.core import mail
from django.db import connection

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
