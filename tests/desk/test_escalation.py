"""The beat job under a frozen clock: warnings before, breaches at the deadline, once each, pauses respected."""

from datetime import datetime, timedelta

import pytest
import time_machine
from django.core import mail

from crm.desk import services
from crm.desk.escalation import tickets_escalate
from crm.desk.models import EventKind, TicketEvent
from crm.desk.selectors import sla_breaches_between
from crm.desk.tasks import escalate_tickets

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(operator, supervisor):
    operator.email, supervisor.email = "owner@example.com", "sup@example.com"
    operator.save()
    supervisor.save()
    return operator, supervisor


def run_at(moment, django_capture_on_commit_callbacks) -> dict:
    with time_machine.travel(moment, tick=False), django_capture_on_commit_callbacks(execute=True):
        return escalate_tickets()


def escalations(ticket) -> list[tuple[str, str]]:
    return list(
        TicketEvent.objects.filter(ticket=ticket, kind__in=[EventKind.WARNED, EventKind.BREACHED])
        .order_by("pk")
        .values_list("kind", "clock")
    )


def test_owner_is_warned_first_then_supervisors_at_the_breach_each_once(
    open_ticket, people, now, django_capture_on_commit_callbacks
):
    run = lambda minutes: run_at(now + timedelta(minutes=minutes), django_capture_on_commit_callbacks)  # noqa: E731

    assert run(11) == {"warned": 0, "breached": 0}
    assert mail.outbox == []

    assert run(12) == {"warned": 1, "breached": 0}  # 80% of Tell's 15 minutes
    assert [m.to for m in mail.outbox] == [["owner@example.com"]]
    assert "Tell" in mail.outbox[0].subject

    assert run(13) == {"warned": 0, "breached": 0}  # already warned: nothing again

    assert run(15) == {"warned": 0, "breached": 1}
    assert sorted(mail.outbox[1].to) == ["owner@example.com", "sup@example.com"]
    assert "missed" in mail.outbox[1].subject

    for minutes in (16, 17, 30):
        assert run(minutes) == {"warned": 0, "breached": 0}
    assert escalations(open_ticket) == [("warned", "tell"), ("breached", "tell")]
    assert len(mail.outbox) == 2

    # Time (1 h): warned at 48 minutes, breached at 60, each once.
    assert run(48) == {"warned": 1, "breached": 0}
    assert run(60) == {"warned": 0, "breached": 1}
    assert run(61) == {"warned": 0, "breached": 0}
    assert escalations(open_ticket)[2:] == [("warned", "time"), ("breached", "time")]
    assert sla_breaches_between(start=now, end=now + timedelta(days=1)) == 2


def test_a_missed_beat_still_warns_the_owner_before_recording_the_breach(
    open_ticket, people, now, django_capture_on_commit_callbacks
):
    assert run_at(now + timedelta(minutes=20), django_capture_on_commit_callbacks) == {"warned": 1, "breached": 1}
    assert escalations(open_ticket) == [("warned", "tell"), ("breached", "tell")]
    assert mail.outbox[0].to == ["owner@example.com"]


def test_a_step_done_in_time_escalates_nothing(open_ticket, people, operator, now, django_capture_on_commit_callbacks):
    services.ticket_announce(ticket=open_ticket, actor=operator, body="We are on it.", now=now + timedelta(minutes=3))
    assert run_at(now + timedelta(minutes=16), django_capture_on_commit_callbacks) == {"warned": 0, "breached": 0}
    assert escalations(open_ticket) == []


def test_a_paused_ticket_escalates_nothing_and_its_deadlines_move_by_the_pause(
    open_ticket, people, operator, now, django_capture_on_commit_callbacks
):
    services.ticket_pause(
        ticket=open_ticket, actor=operator, reason="waiting on the supplier", now=now + timedelta(minutes=5)
    )
    assert run_at(now + timedelta(minutes=40), django_capture_on_commit_callbacks) == {"warned": 0, "breached": 0}
    # Resumed after 60 minutes paused: Tell is now due at 10:15 + 1 h = 11:15.
    services.ticket_resume(ticket=open_ticket, actor=operator, now=now + timedelta(minutes=65))
    assert run_at(now + timedelta(minutes=71), django_capture_on_commit_callbacks) == {"warned": 0, "breached": 0}
    assert run_at(now + timedelta(minutes=72), django_capture_on_commit_callbacks) == {"warned": 1, "breached": 0}
    assert run_at(now + timedelta(minutes=75), django_capture_on_commit_callbacks) == {"warned": 0, "breached": 1}
    breach = TicketEvent.objects.get(ticket=open_ticket, kind=EventKind.BREACHED)
    assert datetime.fromisoformat(breach.data["due_at"]) == now + timedelta(minutes=75)


def test_closed_and_draft_tickets_are_left_alone(
    open_ticket, people, operator, now, django_capture_on_commit_callbacks
):
    services.ticket_open(title="draft", description="", severity="high", source="alarm", draft=True)
    services.ticket_close(ticket=open_ticket, actor=operator, now=now + timedelta(minutes=1))
    assert run_at(now + timedelta(days=2), django_capture_on_commit_callbacks) == {"warned": 0, "breached": 0}


def test_the_breach_is_recorded_once_even_if_two_runs_overlap(open_ticket, people, now):
    with time_machine.travel(now + timedelta(minutes=20), tick=False):
        tickets_escalate()
        tickets_escalate()
    assert escalations(open_ticket) == [("warned", "tell"), ("breached", "tell")]
