"""The fast path of event validation never disagrees with EventItemSerializer."""

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework import serializers

from members.api.events import EventItemSerializer, plainly_valid_event
from members.models import EventKind, InteractionKind

texts = st.one_of(
    st.sampled_from(["M1", " M1", "M1 ", "", "x" * 64, "x" * 65, "商店"]),
    st.text(max_size=70),
    st.integers(),
    st.none(),
)
moments = st.one_of(
    st.datetimes(
        min_value=datetime(1890, 1, 1),
        max_value=datetime(2210, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))]),
    ).map(lambda moment: moment.isoformat()),
    st.datetimes().map(lambda moment: moment.isoformat()),  # naive
    st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01", "yesterday", "2026-13-01T00:00:00+08:00"]),
    st.integers(),
)
amounts = st.one_of(
    st.none(),
    st.sampled_from(["10", "10.5", "10.50", "10.505", "-1", "1e3", "", " 5", "12345678901", "1234567890.99"]),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
    st.integers(min_value=-5, max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False),
)
items = st.fixed_dictionaries(
    {
        "member_external_id": texts,
        "kind": st.one_of(st.sampled_from(EventKind.values), texts),
        "occurred_at": moments,
        "source": texts,
        "external_id": texts,
    },
    optional={
        "sub_kind": st.one_of(st.sampled_from(InteractionKind.values), texts),
        "amount": amounts,
        "payload": st.one_of(
            st.dictionaries(st.text(max_size=5), st.integers(), max_size=3), st.none(), st.lists(st.integers())
        ),
    },
)


def _normalized(data: dict) -> tuple:
    return (
        data["member_external_id"],
        data["kind"],
        data.get("sub_kind") or "",
        data.get("amount"),
        data["occurred_at"],
        data["source"],
        data["external_id"],
        data.get("payload") or {},
    )


@settings(max_examples=300, deadline=None, derandomize=True)
@given(item=items)
def test_the_fast_path_accepts_only_what_the_serializer_accepts_with_the_same_values(item):
    fast = plainly_valid_event(item)
    try:
        slow = EventItemSerializer().run_validation(item)
    except serializers.ValidationError:
        slow = None

    if fast is not None:
        assert slow is not None, item
        assert _normalized(fast) == _normalized(slow), item


def test_a_clean_event_takes_the_fast_path():
    event = {
        "member_external_id": "M1",
        "kind": "purchase",
        "amount": "88.00",
        "occurred_at": "2026-06-01T10:00:00+08:00",
        "source": "shop",
        "external_id": "o1",
    }

    assert plainly_valid_event(event) is not None
