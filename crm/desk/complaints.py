"""Complaints and crisis tickets: the complaints API opens a ticket, or joins an open one, when the
partner marks a complaint severe enough (the rule staff set in DeskSettings)."""

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from crm.core.exceptions import ApplicationError
from crm.desk.models import SEVERITY_RANK, DeskSettings, EventKind, Ticket, TicketEvent, TicketSource
from crm.desk.services import ACTIVE, _add_members, _record, ticket_open
from members.models import Member


def ticket_for_complaint(
    *,
    member: Member,
    severity: str,
    category: str,
    text: str,
    source: str,
    external_id: str,
    now: datetime | None = None,
) -> Ticket | None:
    """Open a crisis ticket for a severe complaint, or let it join the open API ticket of its category.

    Returns None when the rule does not apply (no severity, below the threshold, or the API may not
    open tickets). The complaint is recorded on the ticket's timeline either way.
    """
    now = now or timezone.now()
    config = DeskSettings.load()
    if not severity or not config.api_min_severity:
        return None
    if SEVERITY_RANK[severity] < SEVERITY_RANK[config.api_min_severity]:
        return None
    complaint = {"source": source, "external_id": external_id, "category": category, "severity": severity}
    with transaction.atomic():
        # The settings row serialises complaints arriving together, so they open one ticket, not two.
        DeskSettings.objects.select_for_update().filter(pk=config.pk).first()
        ticket = (
            Ticket.objects.select_for_update()
            .filter(
                source=TicketSource.API,
                category=category,
                status__in=ACTIVE,
                opened_at__gte=now - timedelta(hours=config.api_attach_hours),
            )
            .order_by("-opened_at")
            .first()
        )
        if ticket is not None:
            ticket_complaint_attach(ticket=ticket, member_id=member.pk, complaint=complaint, now=now)
            return ticket
        ticket = ticket_open(
            title=(gettext("Complaints: %(category)s — %(text)s") % {"category": category, "text": text})[:200],
            description=text,
            severity=severity,
            source=TicketSource.API,
            category=category,
            member_numbers=[member.external_id],
            now=now,
        )
        _record(ticket, EventKind.COMPLAINT, at=now, data={**complaint, "member_id": member.pk, "new_member": True})
    return ticket


def ticket_of_complaint(*, source: str, external_id: str) -> int | None:
    """The ticket a complaint opened or joined, for a replayed complaint's answer."""
    return (
        TicketEvent.objects.filter(kind=EventKind.COMPLAINT, data__source=source, data__external_id=external_id)
        .values_list("ticket_id", flat=True)
        .first()
    )


@transaction.atomic
def ticket_complaint_attach(*, ticket: Ticket, member_id: int, complaint: dict, now: datetime | None = None) -> bool:
    """A complaint joins an active ticket: its member becomes affected (once); recorded on the timeline."""
    now = now or timezone.now()
    ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
    if ticket.status not in ACTIVE:
        raise ApplicationError(gettext("Only an open ticket can take complaints."))
    added = _add_members(ticket, Member.objects.filter(pk=member_id).values("pk"), now=now)
    if added:
        Ticket.objects.filter(pk=ticket.pk).update(affected_count=ticket.affected_count + added)
    _record(ticket, EventKind.COMPLAINT, at=now, data={**complaint, "member_id": member_id, "new_member": bool(added)})
    return bool(added)
