"""The Idempotency-Key header: replays, conflicts, expiry, pruning, and 20 concurrent repeats."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from crm.models import IdempotencyKey, Partner
from crm.services import idempotency_keys_prune
from crm.tasks import prune_idempotency_keys
from loyalty.models import PointsEntry
from loyalty.selectors import points_balance
from members.models import Member
from tests.api.conftest import assert_error
from tests.factories import MemberFactory

EARN = "/api/v1/points/earn/"
UPSERT = "/api/v1/members/upsert/"


def _earn(client, key: str, reference: str = "order-1", points: int = 100):
    body = {"member_external_id": "M1", "points": points, "reason": "order", "reference": reference}
    return client.post(EARN, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


@pytest.mark.django_db
def test_a_repeat_returns_the_first_response(api):
    first = api.post(UPSERT, {"external_id": "M1", "name": "A"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    again = api.post(UPSERT, {"name": "A", "external_id": "M1"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")

    assert (first.status_code, again.status_code) == (201, 201)  # the second did not run: no 200 "updated"
    assert first.json() == again.json()
    assert again["Idempotent-Replayed"] == "true" and not first.has_header("Idempotent-Replayed")


@pytest.mark.django_db
def test_the_same_key_with_a_different_body_is_409(api):
    MemberFactory(external_id="M1")
    _earn(api, "k1", points=100)

    assert_error(_earn(api, "k1", points=999), 409, "conflict")
    assert points_balance(member=Member.objects.get()) == 100


@pytest.mark.django_db
def test_keys_are_per_partner(api, make_client):
    other = make_client(for_partner=Partner.objects.create(name="POS", rate_limit_per_minute=0))

    first = api.post(UPSERT, {"external_id": "M1"}, format="json", HTTP_IDEMPOTENCY_KEY="same")
    second = other.post(UPSERT, {"external_id": "M2"}, format="json", HTTP_IDEMPOTENCY_KEY="same")

    assert (first.status_code, second.status_code) == (201, 201)
    assert Member.objects.count() == 2


@pytest.mark.django_db
def test_an_error_outcome_is_replayed_too(api):
    MemberFactory(external_id="M1")
    body = {"member_external_id": "M1", "points": 5, "reason": "x", "reference": "r"}

    short = api.post("/api/v1/points/redeem/", body, format="json", HTTP_IDEMPOTENCY_KEY="k")
    api.post(EARN, {**body, "reference": "e"}, format="json")
    again = api.post("/api/v1/points/redeem/", body, format="json", HTTP_IDEMPOTENCY_KEY="k")

    assert short.status_code == again.status_code == 422
    assert short.json() == again.json()


@pytest.mark.django_db
def test_invalid_input_stores_nothing_and_a_bad_key_is_400(api):
    assert_error(api.post(UPSERT, {}, format="json", HTTP_IDEMPOTENCY_KEY="k"), 400, "invalid")
    assert IdempotencyKey.objects.filter(response_status=400).count() == 1
    body = assert_error(
        api.post(UPSERT, {"external_id": "M1"}, format="json", HTTP_IDEMPOTENCY_KEY="x" * 256), 400, "invalid"
    )
    assert "Idempotency-Key" in body["fields"]


@pytest.mark.django_db
def test_after_24_hours_a_key_may_be_used_again_and_the_beat_job_prunes_it(api):
    MemberFactory(external_id="M1")
    _earn(api, "k1", reference="a")
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))

    reused = _earn(api, "k1", reference="b")
    assert reused.status_code == 201 and not reused.has_header("Idempotent-Replayed")
    assert PointsEntry.objects.count() == 2

    IdempotencyKey.objects.create(owner="p:0", key="old", request_hash="h", method="POST", path="/")
    IdempotencyKey.objects.filter(key="old").update(created_at=timezone.now() - timedelta(hours=25))
    assert prune_idempotency_keys() == 1
    assert idempotency_keys_prune() == 0
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["k1"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_repeats_make_one_effect_and_twenty_identical_responses(make_client):
    MemberFactory(external_id="M1")
    secret = make_client().secret
    barrier = threading.Barrier(20)
    responses: list = [None] * 20

    def send(index: int) -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
        try:
            barrier.wait()
            responses[index] = _earn(client, "concurrent-key")
        finally:
            connection.close()  # each thread had a connection of its own

    threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert PointsEntry.objects.count() == 1
    assert points_balance(member=Member.objects.get()) == 100
    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1
    assert sum(r.has_header("Idempotent-Replayed") for r in responses) == 19


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_event_batches_with_one_key_record_once(make_client):
    member = MemberFactory(external_id="M1")
    secret = make_client().secret
    body = {
        "events": [
            {
                "member_external_id": "M1",
                "kind": "purchase",
                "amount": "5.00",
                "source": "pos",
                "occurred_at": "2026-01-01T00:00:00Z",
                "external_id": f"e{n}",
            }
            for n in range(50)
        ]
    }
    barrier = threading.Barrier(20)
    responses: list = [None] * 20

    def send(index: int) -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
        try:
            barrier.wait()
            responses[index] = client.post("/api/v1/events/batch/", body, format="json", HTTP_IDEMPOTENCY_KEY="b")
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    member.refresh_from_db()
    assert member.orders_count == 50
    assert len({r.content for r in responses}) == 1
    assert responses[0].json()["created"] == 50
