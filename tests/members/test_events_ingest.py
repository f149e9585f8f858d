"""events_ingest records each event once and keeps the rollups on Member exact."""

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from members.models import ACTIVE_KINDS, INTERACTION_KINDS, EventKind, Member, MemberEvent
from members.services import EventInput, events_ingest, member_rollups_rebuild
from members.services.events import COPY_MIN_ROWS, ROWS_PER_INSERT
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 3, 1, 9, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
ROLLUPS = ("last_active_at", "last_interaction_at", "last_purchase_at", "orders_count", "total_spent")


def _event(member, number: int, kind: str = EventKind.PURCHASE, *, hours: float = 0, amount=None, **fields):
    if amount is None and kind in {EventKind.PURCHASE, EventKind.REFUND}:
        amount = Decimal("100.00")
    return EventInput(
        member_id=member.pk,
        kind=kind,
        occurred_at=T0 + timedelta(hours=hours),
        source=fields.pop("source", "shop"),
        external_id=f"ev-{number}",
        amount=amount,
        **fields,
    )


def _rollups(member) -> dict:
    member.refresh_from_db()
    return {name: getattr(member, name) for name in ROLLUPS}


def test_a_replayed_batch_is_recorded_once_and_not_counted_twice():
    member = MemberFactory()
    batch = [
        _event(member, 1, amount=Decimal("88.00")),
        _event(member, 2, EventKind.CHECK_IN, hours=1),
        _event(member, 3, EventKind.INTERACTION, hours=2, sub_kind="like", payload={"post": "新品开箱"}),
    ]

    first = events_ingest(events=batch)
    after_first = _rollups(member)
    replay = events_ingest(events=batch)

    assert (first.created, first.duplicates) == (3, 0)
    assert first.created_keys == {("shop", "ev-1"), ("shop", "ev-2"), ("shop", "ev-3")}
    assert (replay.created, replay.duplicates, replay.created_keys) == (0, 3, set())
    assert MemberEvent.objects.filter(member=member).count() == 3
    assert _rollups(member) == after_first
    assert after_first["orders_count"] == 1
    assert after_first["total_spent"] == Decimal("88.00")
    stored = MemberEvent.objects.get(external_id="ev-3")
    assert (stored.sub_kind, stored.payload) == ("like", {"post": "新品开箱"})


def test_a_replay_with_changed_content_keeps_the_first_version():
    member = MemberFactory()
    events_ingest(events=[_event(member, 1, amount=Decimal("50.00"))])

    result = events_ingest(events=[_event(member, 1, amount=Decimal("5000.00"), hours=5)])

    assert result.duplicates == 1
    assert MemberEvent.objects.get(external_id="ev-1").amount == Decimal("50.00")
    assert _rollups(member)["total_spent"] == Decimal("50.00")
    assert _rollups(member)["last_purchase_at"] == T0


def test_the_same_event_id_from_two_sources_is_two_events():
    member = MemberFactory()

    result = events_ingest(events=[_event(member, 1, source="shop"), _event(member, 1, source="pos")])

    assert result.created == 2
    assert _rollups(member)["orders_count"] == 2


def test_refunds_reduce_total_spent_but_are_not_orders():
    member = MemberFactory()

    events_ingest(
        events=[
            _event(member, 1, amount=Decimal("199.00"), hours=0),
            _event(member, 2, amount=Decimal("59.90"), hours=24),
            _event(member, 3, EventKind.REFUND, amount=Decimal("39.90"), hours=48),
        ]
    )

    rollups = _rollups(member)
    assert rollups["total_spent"] == Decimal("219.00")
    assert rollups["orders_count"] == 2
    assert rollups["last_purchase_at"] == T0 + timedelta(hours=24)
    assert rollups["last_active_at"] == T0 + timedelta(hours=48)


@pytest.mark.parametrize("kind", EventKind.values)
def test_each_kind_moves_last_active_and_last_interaction_as_declared(kind):
    member = MemberFactory()

    events_ingest(events=[_event(member, 1, kind)])

    rollups = _rollups(member)
    assert (rollups["last_active_at"] == T0) is (kind in ACTIVE_KINDS)
    assert (rollups["last_interaction_at"] == T0) is (kind in INTERACTION_KINDS)
    assert rollups["last_active_at"] in (None, T0)
    assert rollups["last_interaction_at"] in (None, T0)


def test_buying_is_activity_but_not_interaction_and_leaving_a_group_is_neither():
    # DOMAIN.md: a member who buys less but engages daily is not drifting, so the two differ.
    member = MemberFactory()

    events_ingest(
        events=[
            _event(member, 1, EventKind.MESSAGE_READ, hours=0),
            _event(member, 2, EventKind.INTERACTION, hours=1, sub_kind="live_watch"),
            _event(member, 3, EventKind.PURCHASE, hours=2),
            _event(member, 4, EventKind.COMPLAINT, hours=3),
            _event(member, 5, EventKind.GROUP_EXIT, hours=4),
        ]
    )

    rollups = _rollups(member)
    assert rollups["last_interaction_at"] == T0 + timedelta(hours=1)
    assert rollups["last_purchase_at"] == T0 + timedelta(hours=2)
    assert rollups["last_active_at"] == T0 + timedelta(hours=3)


def test_an_older_event_arriving_late_does_not_move_rollups_back():
    member = MemberFactory()
    events_ingest(events=[_event(member, 1, hours=10), _event(member, 2, EventKind.CHECK_IN, hours=10)])

    events_ingest(events=[_event(member, 3, hours=-100), _event(member, 4, EventKind.UGC, hours=-100)])

    rollups = _rollups(member)
    assert rollups["last_purchase_at"] == T0 + timedelta(hours=10)
    assert rollups["last_active_at"] == T0 + timedelta(hours=10)
    assert rollups["last_interaction_at"] == T0 + timedelta(hours=10)
    assert rollups["orders_count"] == 2


def test_duplicates_inside_one_batch_are_recorded_once():
    member = MemberFactory()
    event = _event(member, 1, amount=Decimal("30.00"))

    result = events_ingest(events=[event, event, replace(event, amount=Decimal("31.00"))])

    assert (result.created, result.duplicates) == (1, 2)
    assert MemberEvent.objects.filter(member=member).count() == 1
    assert _rollups(member)["orders_count"] == 1
    assert _rollups(member)["total_spent"] == Decimal("30.00")


def test_input_larger_than_a_batch_is_split_and_replays_across_batches_are_caught():
    members = MemberFactory.create_batch(3)
    events = [_event(members[n % 3], n, hours=n, amount=Decimal(n)) for n in range(1, 26)]
    # Replays of events from earlier batches, arriving in later ones.
    replays = [events[0], events[11], events[24]]

    result = events_ingest(events=iter(events + replays), batch_size=10)

    assert (result.created, result.duplicates) == (25, 3)
    assert MemberEvent.objects.count() == 25
    for index, member in enumerate(members):
        numbers = range(index or 3, 26, 3)
        rollups = _rollups(member)
        assert rollups["orders_count"] == len(numbers)
        assert rollups["total_spent"] == sum(Decimal(n) for n in numbers)
        assert rollups["last_purchase_at"] == T0 + timedelta(hours=max(numbers))


def test_a_bulk_batch_takes_the_same_rules():
    # Past COPY_MIN_ROWS, PostgreSQL stages the batch with COPY; past ROWS_PER_INSERT SQLite splits its INSERT.
    bulk = max(COPY_MIN_ROWS, ROWS_PER_INSERT)
    members = MemberFactory.create_batch(4)
    events = [
        _event(members[n % 4], n, EventKind.INTERACTION, hours=n / 100, sub_kind="view", payload={"标题": f"第{n}篇"})
        for n in range(bulk + 500)
    ]
    events += [
        _event(members[0], 0, EventKind.INTERACTION, sub_kind="view"),
        _event(members[1], 10**6, amount=Decimal("9.99")),
    ]

    with CaptureQueriesContext(connection) as queries:
        result = events_ingest(events=events, batch_size=len(events))

    if connection.vendor == "postgresql":
        assert any(query["sql"].startswith("COPY") for query in queries.captured_queries)
    assert (result.created, result.duplicates) == (bulk + 501, 1)
    assert MemberEvent.objects.count() == bulk + 501
    assert MemberEvent.objects.get(external_id="ev-7").payload == {"标题": "第7篇"}
    last = bulk + 499
    assert _rollups(members[last % 4])["last_interaction_at"] == T0 + timedelta(hours=last / 100)
    assert _rollups(members[1])["total_spent"] == Decimal("9.99")


def test_a_bulk_batch_stores_every_value_as_given():
    # The COPY path encodes rows itself: text with COPY's special characters, JSON with escapes,
    # NULL and non-NULL amounts and offsets other than UTC must come back unchanged.
    member = MemberFactory()
    awkward = ["tab\there", "new\nline", "carriage\rreturn", "back\\slash \\N", "引号\"'", "\\t literal"]
    events = [
        _event(
            member,
            n,
            EventKind.INTERACTION if n % 3 else EventKind.PURCHASE,
            hours=n / 7,
            amount=None if n % 3 else Decimal(n) / 100,
            sub_kind="view" if n % 3 else "",
            source=f"src {awkward[n % len(awkward)]}",
            payload={"text": awkward[n % len(awkward)], "n": n, "nested": {"list": [1.5, None, True]}} if n % 2 else {},
        )
        for n in range(COPY_MIN_ROWS + 10)
    ]
    events = [
        replace(event, external_id=f"{event.external_id} {awkward[n % len(awkward)]}") for n, event in enumerate(events)
    ]
    events[5] = replace(
        events[5], occurred_at=datetime(2025, 3, 1, 23, 59, 59, 999999, tzinfo=ZoneInfo("America/New_York"))
    )

    result = events_ingest(events=events, batch_size=len(events))

    assert result.created == len(events)
    stored = {
        (row.source, row.external_id): row
        for row in MemberEvent.objects.only(
            "kind", "sub_kind", "amount", "occurred_at", "source", "external_id", "payload"
        )
    }
    for event in events:
        row = stored[(event.source, event.external_id)]
        assert (row.kind, row.sub_kind, row.amount, row.occurred_at, row.payload) == (
            event.kind,
            event.sub_kind,
            event.amount,
            event.occurred_at,
            event.payload,
        )


def test_many_bulk_batches_record_each_event_once_with_exact_rollups():
    # Past one batch, the next batch is sorted and encoded in a worker thread meanwhile.
    members = MemberFactory.create_batch(3)
    events = [_event(members[n % 3], n, hours=n, amount=Decimal("1.25")) for n in range(COPY_MIN_ROWS * 3 + 7)]
    replays = events[::5]

    result = events_ingest(events=events + replays, batch_size=COPY_MIN_ROWS)

    assert (result.created, result.duplicates) == (len(events), len(replays))
    assert MemberEvent.objects.count() == len(events)
    for index, member in enumerate(members):
        own = [event for event in events if event.member_id == member.pk]
        assert _rollups(member)["orders_count"] == len(own)
        assert _rollups(member)["total_spent"] == Decimal("1.25") * len(own)
        assert _rollups(member)["last_purchase_at"] == max(event.occurred_at for event in own), index


def test_batches_inside_one_outer_transaction_record_each_event_once():
    # The importer wraps a whole file in one transaction; batches must not see each other's staging.
    member = MemberFactory()
    events = [_event(member, n, EventKind.CHECK_IN, hours=n) for n in range(COPY_MIN_ROWS * 2 + 10)]

    with transaction.atomic():
        first = events_ingest(events=events[:COPY_MIN_ROWS], batch_size=COPY_MIN_ROWS)
        rest = events_ingest(events=events, batch_size=COPY_MIN_ROWS)

    assert (first.created, rest.created, rest.duplicates) == (COPY_MIN_ROWS, COPY_MIN_ROWS + 10, COPY_MIN_ROWS)
    assert MemberEvent.objects.count() == len(events)
    assert _rollups(member)["last_active_at"] == T0 + timedelta(hours=len(events) - 1)


def test_nothing_to_ingest_is_a_no_op():
    result = events_ingest(events=[])

    assert (result.created, result.duplicates, result.created_keys) == (0, 0, set())


def test_rebuild_restores_drifted_rollups_exactly():
    buyer, reader, idle, outside = MemberFactory.create_batch(4)
    events_ingest(
        events=[
            _event(buyer, 1, amount=Decimal("120.50"), hours=1),
            _event(buyer, 2, EventKind.REFUND, amount=Decimal("20.50"), hours=2),
            _event(buyer, 3, EventKind.GROUP_EXIT, hours=3),
            _event(reader, 4, EventKind.INTERACTION, sub_kind="article_read", hours=5),
            _event(outside, 5, amount=Decimal("9.90")),
        ]
    )
    expected = {member.pk: _rollups(member) for member in (buyer, reader, idle)}
    outside_before = _rollups(outside)
    # Drift: a lost update, a double count and a stray value on a member with no events at all.
    Member.objects.filter(pk=buyer.pk).update(orders_count=7, total_spent=Decimal("999.99"), last_purchase_at=None)
    Member.objects.filter(pk=reader.pk).update(last_interaction_at=T0 - timedelta(days=30), last_active_at=None)
    Member.objects.filter(pk=idle.pk).update(orders_count=3, total_spent=Decimal("1"), last_active_at=T0)
    Member.objects.filter(pk=outside.pk).update(orders_count=42)

    written = member_rollups_rebuild(
        first_id=min(buyer.pk, reader.pk, idle.pk), last_id=max(buyer.pk, reader.pk, idle.pk)
    )

    assert written == 3
    assert {member.pk: _rollups(member) for member in (buyer, reader, idle)} == expected
    assert expected[idle.pk] == {
        "last_active_at": None,
        "last_interaction_at": None,
        "last_purchase_at": None,
        "orders_count": 0,
        "total_spent": Decimal("0"),
    }
    assert _rollups(outside) == {**outside_before, "orders_count": 42}


# A stream of events over two members, with replays, ingested in random batch sizes.
_event_stream = st.lists(
    st.tuples(
        st.integers(0, 1),  # which member
        st.sampled_from(EventKind.values),
        st.integers(-500, 500),  # hours from T0
        st.decimals(min_value=0, max_value=5000, places=2, allow_nan=False, allow_infinity=False),
        st.integers(0, 30),  # event id: repeats are replays
    ),
    max_size=40,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=_event_stream, batch_size=st.integers(1, 12))
def test_incremental_rollups_equal_a_rebuild_from_the_log(stream, batch_size):
    members = MemberFactory.create_batch(2)
    events = [
        EventInput(
            member_id=members[who].pk,
            kind=kind,
            occurred_at=T0 + timedelta(hours=hours),
            source="prop",
            external_id=f"{members[0].pk}-{number}",
            amount=amount if kind in {EventKind.PURCHASE, EventKind.REFUND} else None,
        )
        for who, kind, hours, amount, number in stream
    ]

    result = events_ingest(events=events, batch_size=batch_size)
    incremental = [_rollups(member) for member in members]
    member_rollups_rebuild(first_id=members[0].pk, last_id=members[1].pk)

    assert result.created == len({event.external_id for event in events})
    assert result.created + result.duplicates == len(events)
    assert [_rollups(member) for member in members] == incremental
