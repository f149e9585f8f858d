"""The beat job's side of the 3T clocks: warn the owner, then at the deadline tell the supervisors.

Run every minute. For each open (not paused) ticket, each clock not yet done is checked with
crm.desk.sla: once `warn_percent` of its time has passed the owner is e-mailed and a `warned`
entry is written; at the deadline the supervisors (and the owner and watchers) are e-mailed and a
`breached` entry is written. Each is recorded at most once per clock (a unique constraint backs
the check), always the warning before the breach, and e-mails go only once the entry is committed.
"""

import logging
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from crm.desk import sla
from crm.desk.models import Clock, EventKind, Ticket, TicketEvent, TicketStatus
from crm.roles import SUPERVISOR

logger = logging.getLogger(__name__)


def tickets_escalate(*, now: datetime | None = None) -> dict:
    """Warn and record breaches for every open ticket that is due; return counts."""
    now = now or timezone.now()
    counts = {"warned": 0, "breached": 0}
    for ticket_id in Ticket.objects.filter(status=TicketStatus.OPEN).values_list("pk", flat=True):
        for level in _escalate_ticket(ticket_id, now=now):
            counts[level] += 1
    return counts


@transaction.atomic
def _escalate_ticket(ticket_id: int, *, now: datetime) -> list[str]:
    ticket = Ticket.objects.select_for_update(of=("self",)).select_related("owner").get(pk=ticket_id)
    if ticket.status != TicketStatus.OPEN:
        return []
    recorded = set(
        TicketEvent.objects.filter(ticket=ticket, kind__in=[EventKind.WARNED, EventKind.BREACHED]).values_list(
            "kind", "clock"
        )
    )
    done = []
    for state in sla.ticket_clocks(ticket, now=now):
        level = sla.escalation_due(state, paused=False)
        if level is None:
            continue
        # The owner hears first, even when the beat job was down and the deadline has already passed.
        if (EventKind.WARNED, state.name) not in recorded:
            _record_escalation(ticket, state, kind=EventKind.WARNED, now=now)
            done.append("warned")
        if level == sla.BREACH and (EventKind.BREACHED, state.name) not in recorded:
            _record_escalation(ticket, state, kind=EventKind.BREACHED, now=now)
            done.append("breached")
    return done


def _record_escalation(ticket: Ticket, state: sla.ClockState, *, kind: str, now: datetime) -> None:
    warned = kind == EventKind.WARNED
    recipients = _owner_addresses(ticket) if warned else _breach_addresses(ticket)
    with translation.override(settings.LANGUAGE_CODE):
        clock = str(Clock(state.name).label)
        due = timezone.localtime(state.due_at).strftime("%Y-%m-%d %H:%M")
        if warned:
            subject = _("Crisis ticket #%(id)s: %(clock)s is due at %(due)s") % {
                "id": ticket.pk,
                "clock": clock,
                "due": due,
            }
        else:
            subject = _("Crisis ticket #%(id)s: %(clock)s deadline missed (%(due)s)") % {
                "id": ticket.pk,
                "clock": clock,
                "due": due,
            }
        body = _(
            "%(title)s\n\nSeverity: %(severity)s. Affected members: %(affected)s.\nOpen the crisis board: %(url)s"
        ) % {
            "title": ticket.title,
            "severity": ticket.get_severity_display(),
            "affected": ticket.affected_count,
            "url": reverse("desk:board"),
        }
    TicketEvent.objects.create(
        ticket=ticket,
        kind=kind,
        clock=state.name,
        at=now,
        note=subject,
        data={"due_at": state.due_at.isoformat(), "notified": sorted(recipients)},
    )
    logger.info(
        "crisis ticket escalation id=%s clock=%s kind=%s recipients=%s", ticket.pk, state.name, kind, len(recipients)
    )
    if recipients:
        addresses = sorted(recipients)
        transaction.on_commit(lambda: send_mail(subject, body, None, addresses, fail_silently=False))


def _owner_addresses(ticket: Ticket) -> set[str]:
    if ticket.owner is not None and ticket.owner.is_active and ticket.owner.email:
        return {ticket.owner.email}
    # Nobody owns it: the supervisors hear at once.
    return _supervisor_addresses()


def _breach_addresses(ticket: Ticket) -> set[str]:
    watchers = set(ticket.watchers.filter(is_active=True).exclude(email="").values_list("email", flat=True))
    return _supervisor_addresses() | _owner_addresses(ticket) | watchers


def _supervisor_addresses() -> set[str]:
    users = get_user_model().objects.filter(is_active=True, groups__name=SUPERVISOR).exclude(email="")
    return set(users.values_list("email", flat=True))
