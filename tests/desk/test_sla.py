"""The 3T clock arithmetic, with no database."""

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from crm.desk import sla
from tests.desk.conftest import SHANGHAI

OPENED = datetime(2026, 3, 16, 10, 0, tzinfo=SHANGHAI)


@dataclass
class FakeTicket:
    opened_at: datetime | None = OPENED
    tell_minutes: int = 15
    time_minutes: int = 60
    trust_minutes: int = 24 * 60
    warn_percent: int = 80
    paused_seconds: int = 0
    paused_at: datetime | None = None
    closed_at: datetime | None = None
    tell_done_at: datetime | None = None
    time_done_at: datetime | None = None
    trust_done_at: datetime | None = None


def clocks(ticket, minutes_after: float):
    return {c.name: c for c in sla.ticket_clocks(ticket, now=OPENED + timedelta(minutes=minutes_after))}


def test_deadlines_are_15_minutes_1_hour_and_24_hours_from_opening():
    states = clocks(FakeTicket(), 0)
    assert [states[n].due_at - OPENED for n in sla.CLOCKS] == [
        timedelta(minutes=15),
        timedelta(hours=1),
        timedelta(hours=24),
    ]
    assert [states[n].seconds_left for n in sla.CLOCKS] == [900, 3600, 86400]
    assert {s.state for s in states.values()} == {sla.RUNNING}


@pytest.mark.parametrize(
    ("minutes", "state", "level"),
    [
        (11.9, sla.RUNNING, None),
        (12, sla.WARNING, sla.WARN),
        (14.99, sla.WARNING, sla.WARN),
        (15, sla.BREACHED, sla.BREACH),
        (90, sla.BREACHED, sla.BREACH),
    ],
)
def test_tell_warns_at_80_percent_and_breaches_at_the_deadline(minutes, state, level):
    tell = clocks(FakeTicket(), minutes)["tell"]
    assert tell.state == state
    assert sla.escalation_due(tell, paused=False) == level


def test_a_step_done_stops_its_clock_in_time_or_late():
    ticket = FakeTicket(tell_done_at=OPENED + timedelta(minutes=10), time_done_at=OPENED + timedelta(minutes=70))
    states = clocks(ticket, 200)
    assert (states["tell"].state, states["tell"].seconds_left) == (sla.DONE, 300)
    assert (states["time"].state, states["time"].seconds_left) == (sla.DONE_LATE, -600)
    assert sla.escalation_due(states["tell"], paused=False) is None
    assert sla.escalation_due(states["time"], paused=False) is None


def test_a_pause_freezes_the_time_left_and_moves_the_deadlines():
    paused = FakeTicket(paused_at=OPENED + timedelta(minutes=5))
    for later in (5, 30, 600):
        tell = clocks(paused, later)["tell"]
        assert (tell.state, tell.seconds_left) == (sla.PAUSED, 600)
        assert sla.escalation_due(tell, paused=True) is None
    # Resumed after 25 minutes paused: the deadlines are 25 minutes later.
    resumed = FakeTicket(paused_seconds=25 * 60)
    assert clocks(resumed, 30)["tell"].seconds_left == 600
    assert clocks(resumed, 30)["tell"].due_at == OPENED + timedelta(minutes=40)
    assert clocks(resumed, 40)["tell"].state == sla.BREACHED


def test_a_closed_ticket_stops_its_clocks_and_a_draft_has_none():
    closed = FakeTicket(closed_at=OPENED + timedelta(minutes=20))
    tell = clocks(closed, 500)["tell"]
    assert (tell.state, tell.seconds_left) == (sla.STOPPED, -300)
    assert sla.escalation_due(tell, paused=False) is None
    assert sla.ticket_clocks(FakeTicket(opened_at=None), now=OPENED) == []
