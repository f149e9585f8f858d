"""Windowed figures on Member: kept at ingest, moved with the runs, rebuilt when a length changes.

Every check compares the figures with a plain-Python count over the member's events: an event
counts in a window when it occurred at or after the window's start (the run's time minus the
length); events after the run's time are in the figures (the run subtracts them itself).
"""

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from members.models import EventKind, InteractionKind, Member, MemberEvent
from members.models_layers import EventWindows, LayerSettings, MemberScore
from members.services.layers import layers_recompute_full, layers_recompute_incremental
from members.services.windows import event_windows_advance
from tests.factories import MemberFactory
from tests.factories.layers import event, ingest

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)
SUB_KINDS = list(InteractionKind.values)


def _random_events(people, now, rng, *, count, future=True):
    # Mostly within a year, some older, a few after `now` (clock skew); half-days so that moving
    # the windows by whole days crosses events.
    days_ago = [0.5, 1.5, 10.5, 14.5, 29.5, 30.5, 31.5, 89.5, 90.5, 200.5, 364.5, 365.5, 366.5, 500]
    if future:
        days_ago.append(-2.5)
    kinds = [EventKind.PURCHASE] * 2 + [EventKind.REFUND] + [EventKind.INTERACTION] * 2 + [EventKind.CHECK_IN]
    events = []
    for _ in range(count):
        kind = rng.choice(kinds)
        amount = rng.choice([10, 99.5, 200]) if kind in (EventKind.PURCHASE, EventKind.REFUND) else None
        sub_kind = rng.choice(SUB_KINDS) if kind == EventKind.INTERACTION else ""
        at = now - rng.choice(days_ago) * DAY
        events.append(event(rng.choice(people), kind, at=at, amount=amount, sub_kind=sub_kind))
    return events


def _expected(member: Member, now, settings_row: LayerSettings) -> dict:
    starts = {
        "rfm": now - settings_row.rfm_window_days * DAY,
        "trend": now - settings_row.trend_days * DAY,
        "live": now - settings_row.live_lover_days * DAY,
        "preference": now - settings_row.content_preference_days * DAY,
    }
    events = list(MemberEvent.objects.filter(member=member))
    purchases = [e for e in events if e.kind == EventKind.PURCHASE and e.occurred_at >= starts["rfm"]]
    refunds = [e for e in events if e.kind == EventKind.REFUND and e.occurred_at >= starts["rfm"]]
    interactions = [e for e in events if e.kind == EventKind.INTERACTION]
    figures = {
        "window_orders": len(purchases),
        "window_spent": sum((e.amount for e in purchases), Decimal(0)) - sum((e.amount for e in refunds), Decimal(0)),
        "window_first_purchase_at": min((e.occurred_at for e in purchases), default=None),
        "trend_orders": sum(1 for e in purchases if e.occurred_at >= starts["trend"]),
        "live_watches": sum(
            1 for e in interactions if e.sub_kind == InteractionKind.LIVE_WATCH and e.occurred_at >= starts["live"]
        ),
    }
    for kind in SUB_KINDS:
        figures[f"interactions_{kind}"] = sum(
            1 for e in interactions if e.sub_kind == kind and e.occurred_at >= starts["preference"]
        )
    return figures


def _actual(member: Member) -> dict:
    member.refresh_from_db()
    return {name: getattr(member, name) for name in _expected_names()}


def _expected_names():
    return ["window_orders", "window_spent", "window_first_purchase_at", "trend_orders", "live_watches"] + [
        f"interactions_{kind}" for kind in SUB_KINDS
    ]


def _assert_exact(people, now):
    settings_row = LayerSettings.load()
    for member in people:
        assert _actual(member) == _expected(member, now, settings_row), member.pk


def test_windows_follow_the_events_as_they_enter_and_leave():
    now = timezone.now()
    rng = random.Random(11)
    people = MemberFactory.create_batch(12, joined_at=now - 600 * DAY)
    ingest(_random_events(people, now, rng, count=300))

    first = event_windows_advance(now=now)  # nothing built yet: a rebuild, recorded
    state = EventWindows.objects.get()
    assert first.rebuilt and state.ready and state.rebuild_reason == "first build" and state.rebuilt_at
    _assert_exact(people, now)

    # New events, late ones (long before the window and just inside it) and future ones.
    ingest(_random_events(people, now, rng, count=150))
    _assert_exact(people, now)

    # The nightly move: a day of events leaves each window; the others keep their figures.
    for days in (1, 2, 5):
        moved = event_windows_advance(now=now + days * DAY)
        assert not moved.rebuilt
        _assert_exact(people, now + days * DAY)
    assert EventWindows.objects.get().rebuilt_at == state.rebuilt_at  # moved, never rebuilt

    # Going back in time (a run as of an earlier moment) adds the events back.
    assert not event_windows_advance(now=now + 1.5 * DAY).rebuilt
    _assert_exact(people, now + 1.5 * DAY)


def test_replays_change_nothing_and_refunds_count_against_the_spend():
    now = timezone.now()
    member = MemberFactory(joined_at=now - 400 * DAY)
    event_windows_advance(now=now)
    bought = event(member, EventKind.PURCHASE, at=now - 3 * DAY, amount=300)
    refund = event(member, EventKind.REFUND, at=now - 2 * DAY, amount=120)
    ingest([bought, refund])
    ingest([bought, refund])  # a partner's retry

    member.refresh_from_db()
    assert (member.window_orders, member.window_spent, member.window_first_purchase_at) == (
        1,
        Decimal("180.00"),
        bought.occurred_at,
    )
    # The purchase leaves the window; the refund two days later too, a day after it.
    event_windows_advance(now=now + 363 * DAY)
    _assert_exact([member], now + 363 * DAY)
    assert member.window_orders == 0 and member.window_first_purchase_at is None
    assert member.window_spent == Decimal("-120.00")
    event_windows_advance(now=now + 364 * DAY)
    member.refresh_from_db()
    assert member.window_spent == 0


def test_the_first_purchase_in_the_window_moves_to_the_next_one_when_it_leaves():
    now = timezone.now()
    member = MemberFactory(joined_at=now - 400 * DAY)
    event_windows_advance(now=now)
    ingest(event(member, EventKind.PURCHASE, at=now - d * DAY, amount=50) for d in (364.5, 300.5, 10.5))
    event_windows_advance(now=now + 1 * DAY)
    member.refresh_from_db()
    assert member.window_orders == 2
    assert member.window_first_purchase_at == now - 300.5 * DAY


def test_a_window_length_edited_rebuilds_the_figures_once_and_records_it():
    now = timezone.now()
    rng = random.Random(5)
    people = MemberFactory.create_batch(6, joined_at=now - 600 * DAY)
    ingest(_random_events(people, now, rng, count=120))
    event_windows_advance(now=now)

    settings_row = LayerSettings.load()
    settings_row.rfm_window_days = 100
    settings_row.content_preference_days = 7
    settings_row.save()
    result = event_windows_advance(now=now + DAY)

    state = EventWindows.objects.get()
    assert result.rebuilt and state.rebuild_reason == "rfm window length changed" and state.rfm_days == 100
    _assert_exact(people, now + DAY)
    assert not event_windows_advance(now=now + 2 * DAY).rebuilt
    _assert_exact(people, now + 2 * DAY)


def test_the_nightly_runs_score_as_an_independent_computation_after_the_windows_moved():
    """Layer runs on consecutive days read the moved windows; events after the run's time are left out."""
    from tests.members.test_layers_rfm import _computed, _expected

    now = timezone.now()
    rng = random.Random(3)
    people = MemberFactory.create_batch(25, joined_at=now - 600 * DAY)
    ingest(_random_events(people, now - 2 * DAY, rng, count=250, future=False))
    layers_recompute_full(now=now - 2 * DAY, range_size=9)
    ingest(_random_events(people, now - DAY, rng, count=60, future=False))
    layers_recompute_incremental(now=now - DAY)
    ingest(_random_events(people, now, rng, count=60, future=False))

    run = layers_recompute_full(now=now, range_size=9)

    assert not run.error and EventWindows.objects.get().rebuild_reason == "first build"
    assert _computed() == _expected(people, now)
    # The top interaction (content preference) and live-stream watches as the old scan found them.
    assert MemberScore.objects.count() == len(people)
