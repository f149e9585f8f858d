"""Batch ingest of events: a result per item, idempotent on (source, external_id)."""

from decimal import Decimal

import pytest

from members.models import MemberEvent
from tests.api.conftest import assert_error
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db

BATCH = "/api/v1/events/batch/"


def _event(n: int, member: str = "M1", **overrides) -> dict:
    event = {
        "member_external_id": member,
        "kind": "purchase",
        "amount": "10.00",
        "occurred_at": "2026-03-01T10:00:00+08:00",
        "source": "shop",
        "external_id": f"o{n}",
    }
    return {**event, **overrides}


def test_each_event_gets_its_result_and_bad_ones_do_not_stop_the_rest(api):
    member = MemberFactory(external_id="M1")
    MemberEvent.objects.create(
        member=member, kind="check_in", occurred_at="2026-01-01T00:00:00Z", source="shop", external_id="o-old"
    )

    response = api.post(
        BATCH,
        {
            "events": [
                _event(1),
                _event(2, kind="interaction", sub_kind="like", amount=None),
                _event(3, member="nobody"),
                _event(4, kind="purchase", amount=None),
                _event(1),  # repeated within the batch
                _event(0, external_id="o-old", kind="check_in"),  # recorded before
                {"nonsense": True},
                _event(5, payload={"lines": [{"sku": "A", "qty": 2}]}),
            ]
        },
        format="json",
    )

    assert response.status_code == 200
    body = response.json()
    statuses = [(r["index"], r["status"]) for r in body["results"]]
    assert statuses == [
        (0, "created"),
        (1, "created"),
        (2, "error"),
        (3, "error"),
        (4, "duplicate"),
        (5, "duplicate"),
        (6, "error"),
        (7, "created"),
    ]
    assert (body["created"], body["duplicates"], body["errors"]) == (3, 2, 3)
    assert body["results"][2]["fields"] == {"member_external_id": ["No member has this number."]}
    assert "member_external_id" in body["results"][2]["reason"]
    assert "amount" in body["results"][3]["fields"]
    assert body["results"][6]["source"] is None
    member.refresh_from_db()
    assert member.orders_count == 2 and member.total_spent == Decimal("20.00")
    assert MemberEvent.objects.get(external_id="o5").payload == {"lines": [{"sku": "A", "qty": 2}]}


def test_replaying_a_batch_records_nothing_twice(api):
    member = MemberFactory(external_id="M1")
    events = {"events": [_event(n) for n in range(5)]}

    first = api.post(BATCH, events, format="json").json()
    again = api.post(BATCH, events, format="json").json()

    assert (first["created"], again["created"], again["duplicates"]) == (5, 0, 5)
    member.refresh_from_db()
    assert member.orders_count == 5


def test_a_batch_of_1000_is_accepted_and_1001_refused(api, django_assert_max_num_queries):
    MemberFactory(external_id="M1")
    api.post(BATCH, {"events": [_event(-1)]}, format="json")  # caches the key's snapshot

    # A fixed number of statements whatever the batch size; on PostgreSQL one of them is the
    # shared advisory lock that keeps ingest and the nightly move of the RFM windows apart, and
    # a batch of 1,000 goes in by COPY through the staging tables (four statements more).
    with django_assert_max_num_queries(11):
        response = api.post(BATCH, {"events": [_event(n) for n in range(1000)]}, format="json")
    assert response.json()["created"] == 1000

    body = assert_error(api.post(BATCH, {"events": [_event(n) for n in range(1001)]}, format="json"), 400, "invalid")
    assert "events" in body["fields"]


@pytest.mark.parametrize("body", [{}, {"events": []}, {"events": "x"}, {"events": [1, 2]}, []])
def test_a_malformed_envelope_is_a_400(api, body):
    assert_error(api.post(BATCH, body, format="json"), 400, "invalid")


def test_non_finite_numbers_in_a_payload_are_refused(api):
    MemberFactory(external_id="M1")
    raw = (
        '{"events": [{"member_external_id": "M1", "kind": "check_in", "occurred_at": "2026-01-01T00:00:00Z", '
        '"source": "s", "external_id": "x", "payload": {"n": 1e999}}]}'
    )

    assert_error(api.post(BATCH, raw, content_type="application/json"), 400, "parse_error")
