"""Crisis tickets under the 3T SOP: every change to a ticket goes through these functions.

Each one locks the ticket row, checks the move is allowed from its status, changes it, and writes
a TicketEvent (who, when, what) to the timeline in the same transaction. Clock arithmetic is in
crm.desk.sla; escalation by the beat job is in crm.desk.escalation.
"""

import logging
from datetime import datetime

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from campaigns.models import MessageChannel, MessageLanguage
from crm.core.exceptions import ApplicationError
from crm.desk import selectors
from crm.desk.models import (
    AudienceKind,
    Clock,
    CompensationStatus,
    EventKind,
    Severity,
    SlaPolicy,
    Ticket,
    TicketEvent,
    TicketMember,
    TicketSource,
    TicketStatus,
)
from members.models import Member

logger = logging.getLogger(__name__)

CHANGE_PERMISSION = "desk.change_ticket"
ADD_PERMISSION = "desk.add_ticket"
APPROVE_PERMISSION = "desk.approve_compensation"
ACTIVE = (TicketStatus.OPEN, TicketStatus.PAUSED)
_LIST_CHUNK = 5_000


# --- opening ---------------------------------------------------------------------------------


def ticket_open(
    *,
    title: str,
    description: str,
    severity: str,
    source: str,
    opened_by=None,
    draft: bool = False,
    **audience,
) -> Ticket:
    """Open a crisis ticket (its three clocks start now), or save it as a draft (no clocks yet).

    `audience` takes at most one of `segment` (a Segment), `member_numbers` (text or a list of
    member numbers) or `group` (a community group name), plus optional `owner`, `watchers`,
    `category` and `now`. An opened ticket needs affected members; a draft may get them later.
    `source` is how it came: staff, api or alarm.
    """
    now = audience.pop("now", None) or timezone.now()
    owner = audience.pop("owner", None)
    watchers = audience.pop("watchers", None) or []
    category = audience.pop("category", "")
    kind, fields = _audience_fields(**audience)
    title = (title or "").strip()
    if not title:
        raise ApplicationError(gettext("A title is required."), {"title": [gettext("A title is required.")]})
    if severity not in Severity.values:
        raise ApplicationError(gettext("Unknown severity."), {"severity": [gettext("Unknown severity.")]})
    if source not in TicketSource.values:
        raise ApplicationError(gettext("Unknown source."), {"source": [gettext("Unknown source.")]})
    if opened_by is not None and not opened_by.has_perm(ADD_PERMISSION):
        raise ApplicationError(gettext("You are not allowed to open crisis tickets."))
    with transaction.atomic():
        ticket = Ticket.objects.create(
            title=title[:200],
            description=description or "",
            severity=severity,
            source=source,
            category=category,
            audience_kind=kind,
            owner=owner or (opened_by if opened_by is not None and opened_by.is_staff else None),
            opened_by=opened_by,
            **fields,
        )
        if watchers:
            ticket.watchers.set(watchers)
        if draft:
            _record(ticket, EventKind.DRAFTED, actor=opened_by, at=now, data={"source": source})
        else:
            _start(ticket, actor=opened_by, now=now)
    logger.info("crisis ticket id=%s source=%s draft=%s", ticket.pk, source, draft)
    return ticket


@transaction.atomic
def ticket_draft_update(*, ticket: Ticket, actor, now: datetime | None = None, **audience) -> Ticket:
    """Set a draft's affected members (one audience kind) before it is opened."""
    ticket = _lock(ticket, actor=actor, statuses=(TicketStatus.DRAFT,))
    kind, fields = _audience_fields(**audience)
    ticket.audience_kind = kind
    for name, value in {"segment": None, "member_numbers": "", "group": "", **fields}.items():
        setattr(ticket, name, value)
    ticket.save()
    return ticket


@transaction.atomic
def ticket_activate(*, ticket: Ticket, actor, now: datetime | None = None) -> Ticket:
    """Open a draft: its clocks start now and its affected members are fixed."""
    ticket = _lock(ticket, actor=actor, statuses=(TicketStatus.DRAFT,))
    _start(ticket, actor=actor, now=now or timezone.now())
    return ticket


def audience_check(*, segment=None, member_numbers="", group: str = "") -> str:
    """The audience kind these fields give, or ApplicationError when more than one is given."""
    return _audience_fields(segment=segment, member_numbers=member_numbers, group=group)[0]


def _audience_fields(*, segment=None, member_numbers="", group: str = "") -> tuple[str, dict]:
    if isinstance(member_numbers, list | tuple | set):
        member_numbers = "\n".join(str(number) for number in member_numbers)
    member_numbers, group = (member_numbers or "").strip(), (group or "").strip()
    given = [name for name, value in (("segment", segment), ("list", member_numbers), ("group", group)) if value]
    if len(given) > 1:
        message = gettext("Choose the affected members one way: a segment, a list, or a community group.")
        raise ApplicationError(message, {"audience": [message]})
    if segment is not None:
        return AudienceKind.SEGMENT, {"segment": segment}
    if member_numbers:
        return AudienceKind.LIST, {"member_numbers": member_numbers}
    if group:
        return AudienceKind.GROUP, {"group": group[:120]}
    return AudienceKind.NONE, {}


def _start(ticket: Ticket, *, actor, now: datetime) -> None:
    if ticket.audience_kind == AudienceKind.NONE:
        message = gettext("Choose the affected members before opening the ticket.")
        raise ApplicationError(message, {"audience": [message]})
    policy = SlaPolicy.objects.filter(severity=ticket.severity).first() or SlaPolicy(severity=ticket.severity)
    ticket.status = TicketStatus.OPEN
    ticket.opened_at = now
    ticket.tell_minutes, ticket.time_minutes = policy.tell_minutes, policy.time_minutes
    ticket.trust_minutes, ticket.warn_percent = policy.trust_minutes, policy.warn_percent
    unknown = _resolve_audience(ticket, now=now)
    ticket.affected_count = TicketMember.objects.filter(ticket=ticket).count()
    ticket.save()
    note = ""
    if unknown:
        note = gettext("%(count)d unknown member numbers ignored, e.g. %(sample)s") % {
            "count": len(unknown),
            "sample": ", ".join(unknown[:5]),
        }
    _record(
        ticket,
        EventKind.OPENED,
        actor=actor,
        at=now,
        note=note,
        data={
            "affected": ticket.affected_count,
            "deadlines_minutes": [ticket.tell_minutes, ticket.time_minutes, ticket.trust_minutes],
        },
    )


def _resolve_audience(ticket: Ticket, *, now: datetime) -> list[str]:
    """Fix the affected members as TicketMember rows (INSERT … SELECT); return unknown member numbers."""
    from members.models_layers import SegmentMember
    from members.selectors import member_ids_by_external_id

    unknown: list[str] = []
    if ticket.audience_kind == AudienceKind.SEGMENT:
        _add_members(ticket, SegmentMember.objects.filter(segment_id=ticket.segment_id).values("member_id"), now=now)
    elif ticket.audience_kind == AudienceKind.GROUP:
        _add_members(ticket, selectors.group_member_ids(group=ticket.group), now=now)
    elif ticket.audience_kind == AudienceKind.LIST:
        from campaigns.services import parse_member_numbers

        numbers = parse_member_numbers(ticket.member_numbers)
        for start in range(0, len(numbers), _LIST_CHUNK):
            chunk = numbers[start : start + _LIST_CHUNK]
            found = member_ids_by_external_id(chunk)
            unknown += [number for number in chunk if number not in found]
            _add_members(ticket, Member.objects.filter(pk__in=list(found.values())).values("pk"), now=now)
    return unknown


def _add_members(ticket: Ticket, member_ids: QuerySet, *, now: datetime) -> int:
    sql, params = member_ids.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TicketMember._meta.db_table} (ticket_id, member_id, added_at) "
            f"SELECT %s, m.id, %s FROM {Member._meta.db_table} m WHERE m.id IN ({sql}) "
            "ON CONFLICT (ticket_id, member_id) DO NOTHING",
            [ticket.pk, connection.ops.adapt_datetimefield_value(now), *params],
        )
        return cursor.rowcount


# --- the three steps ---------------------------------------------------------------------------


def ticket_announce(
    *,
    ticket: Ticket,
    actor,
    body: str,
    channel: str = MessageChannel.WECOM,
    language: str = MessageLanguage.CHINESE,
    subject: str = "",
    now: datetime | None = None,
) -> Ticket:
    """Tell: send the announcement to every affected member through the outbox, once."""
    return _notice(
        ticket=ticket,
        actor=actor,
        clock=Clock.TELL,
        body=body,
        channel=channel,
        language=language,
        subject=subject,
        now=now,
    )


def ticket_publish_timetable(
    *,
    ticket: Ticket,
    actor,
    body: str,
    channel: str = MessageChannel.WECOM,
    language: str = MessageLanguage.CHINESE,
    subject: str = "",
    now: datetime | None = None,
) -> Ticket:
    """Time: send the solution timetable to every affected member through the outbox, once."""
    return _notice(
        ticket=ticket,
        actor=actor,
        clock=Clock.TIME,
        body=body,
        channel=channel,
        language=language,
        subject=subject,
        now=now,
    )


@transaction.atomic
def _notice(*, ticket, actor, clock: str, body: str, channel: str, language: str, subject: str, now) -> Ticket:
    from campaigns.notices import notice_send

    now = now or timezone.now()
    ticket = _lock(ticket, actor=actor, statuses=ACTIVE)
    if getattr(ticket, f"{clock}_done_at") is not None:
        raise ApplicationError(
            gettext("The announcement was already sent.")
            if clock == Clock.TELL
            else gettext("The timetable was already published.")
        )
    body = (body or "").strip()
    if not body:
        message = gettext("The message is empty.")
        raise ApplicationError(message, {"body": [message]})
    if channel not in MessageChannel.values or language not in MessageLanguage.values:
        raise ApplicationError(gettext("Unknown channel or language."))
    label = gettext("announcement") if clock == Clock.TELL else gettext("timetable")
    campaign, plan = notice_send(
        name=f"{gettext('Crisis ticket')} #{ticket.pk} · {label}",
        members=selectors.ticket_member_ids(ticket=ticket),
        channel=channel,
        language=language,
        subject=subject,
        body=body,
        step=clock,
        actor=actor,
        now=now,
    )
    setattr(ticket, f"{clock}_done_at", now)
    setattr(ticket, f"{clock}_campaign", campaign)
    if clock == Clock.TELL:
        ticket.announcement = body
    else:
        ticket.timetable = body
    ticket.save()
    _record(
        ticket,
        EventKind.ANNOUNCED if clock == Clock.TELL else EventKind.TIMETABLE,
        actor=actor,
        clock=clock,
        at=now,
        note=body,
        data={
            "campaign": campaign.pk,
            "channel": channel,
            "planned": plan.planned,
            "queued": plan.queued,
            "skipped": plan.skipped,
        },
    )
    return ticket


# --- pause, resume, reassign, close, reopen -------------------------------------------------------


@transaction.atomic
def ticket_pause(*, ticket: Ticket, actor, reason: str, now: datetime | None = None) -> Ticket:
    """Stop the clocks (e.g. waiting on a supplier's findings); the pause is added to every deadline."""
    now = now or timezone.now()
    reason = _reason(reason)
    ticket = _lock(ticket, actor=actor, statuses=(TicketStatus.OPEN,))
    ticket.status, ticket.paused_at = TicketStatus.PAUSED, now
    ticket.save()
    _record(ticket, EventKind.PAUSED, actor=actor, at=now, note=reason)
    return ticket


@transaction.atomic
def ticket_resume(*, ticket: Ticket, actor, now: datetime | None = None) -> Ticket:
    now = now or timezone.now()
    ticket = _lock(ticket, actor=actor, statuses=(TicketStatus.PAUSED,))
    paused = max(int((now - ticket.paused_at).total_seconds()), 0)
    ticket.paused_seconds += paused
    ticket.status, ticket.paused_at = TicketStatus.OPEN, None
    ticket.save()
    _record(ticket, EventKind.RESUMED, actor=actor, at=now, data={"paused_seconds": paused})
    return ticket


@transaction.atomic
def ticket_reassign(*, ticket: Ticket, actor, owner, note: str = "", now: datetime | None = None) -> Ticket:
    now = now or timezone.now()
    ticket = _lock(ticket, actor=actor, statuses=(TicketStatus.DRAFT, *ACTIVE))
    if owner is None or not owner.is_active or not owner.has_perm(CHANGE_PERMISSION):
        message = gettext("The new owner must be active staff who may work crisis tickets.")
        raise ApplicationError(message, {"owner": [message]})
    previous = ticket.owner
    ticket.owner = owner
    ticket.save()
    _record(
        ticket,
        EventKind.REASSIGNED,
        actor=actor,
        at=now,
        note=note,
        data={"from": previous.get_username() if previous else "", "to": owner.get_username()},
    )
    return ticket


@transaction.atomic
def ticket_details_update(
    *, ticket: Ticket, actor, title: str, description: str, severity: str, owner, now: datetime | None = None
) -> Ticket:
    """Edit a ticket's title, description, severity and owner. The severity is fixed once the ticket
    is open (its deadlines came from it); a new owner goes through `ticket_reassign`, onto the
    timeline."""
    locked = _lock(ticket, actor=actor, statuses=TicketStatus.values)
    title = (title or "").strip()
    if not title:
        raise ApplicationError(gettext("A title is required."), {"title": [gettext("A title is required.")]})
    locked.title, locked.description = title[:200], description or ""
    fields = ["title", "description", "updated_at"]
    if locked.status == TicketStatus.DRAFT and severity != locked.severity:
        if severity not in Severity.values:
            raise ApplicationError(gettext("Unknown severity."), {"severity": [gettext("Unknown severity.")]})
        locked.severity = severity
        fields.append("severity")
    locked.save(update_fields=fields)
    if owner is not None and owner.pk != locked.owner_id:
        ticket_reassign(ticket=locked, actor=actor, owner=owner, now=now)
    return locked


@transaction.atomic
def ticket_close(*, ticket: Ticket, actor, note: str = "", now: datetime | None = None) -> Ticket:
    """Close: the clocks stop where they stand. Refused while compensation is being issued."""
    now = now or timezone.now()
    ticket = _lock(ticket, actor=actor, statuses=ACTIVE)
    if ticket.compensation_status == CompensationStatus.RUNNING:
        raise ApplicationError(gettext("Wait until the compensation has been issued."))
    _fold_pause(ticket, now=now)
    ticket.status, ticket.closed_at = TicketStatus.CLOSED, now
    ticket.save()
    _record(ticket, EventKind.CLOSED, actor=actor, at=now, note=note)
    return ticket


@transaction.atomic
def ticket_reopen(*, ticket: Ticket, actor, reason: str, now: datetime | None = None) -> Ticket:
    """Reopen a closed ticket: the clocks not yet done run on; the time it was closed counts as paused."""
    now = now or timezone.now()
    reason = _reason(reason)
    ticket = _lock(ticket, actor=actor, statuses=(TicketStatus.CLOSED,))
    ticket.paused_seconds += max(int((now - ticket.closed_at).total_seconds()), 0)
    ticket.status, ticket.closed_at = TicketStatus.OPEN, None
    ticket.save()
    _record(ticket, EventKind.REOPENED, actor=actor, at=now, note=reason)
    return ticket


@transaction.atomic
def ticket_note(*, ticket: Ticket, actor, note: str, now: datetime | None = None) -> TicketEvent:
    ticket = _lock(ticket, actor=actor, statuses=(TicketStatus.DRAFT, *ACTIVE, TicketStatus.CLOSED))
    return _record(ticket, EventKind.NOTE, actor=actor, at=now or timezone.now(), note=_reason(note))


# --- internals ---------------------------------------------------------------------------------


def _lock(ticket: Ticket, *, actor, statuses) -> Ticket:
    if actor is not None and not actor.has_perm(CHANGE_PERMISSION):
        raise ApplicationError(gettext("You are not allowed to work crisis tickets."))
    locked = Ticket.objects.select_for_update().get(pk=ticket.pk)
    if locked.status not in statuses:
        raise ApplicationError(
            gettext("A ticket that is %(status)s cannot be changed this way.") % {"status": locked.get_status_display()}
        )
    return locked


def _fold_pause(ticket: Ticket, *, now: datetime) -> None:
    if ticket.paused_at is not None:
        ticket.paused_seconds += max(int((now - ticket.paused_at).total_seconds()), 0)
        ticket.paused_at = None


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        message = gettext("A reason is required.")
        raise ApplicationError(message, {"reason": [message]})
    return reason


def _record(ticket: Ticket, kind: str, *, actor=None, clock: str = "", at=None, note: str = "", data=None):
    return TicketEvent.objects.create(
        ticket=ticket, kind=kind, clock=clock, actor=actor, at=at or timezone.now(), note=note, data=data or {}
    )


# Labels used by the admin and the board for the actions above.
ACTION_LABELS = {
    "announce": _("Send the announcement (Tell)"),
    "timetable": _("Publish the timetable (Time)"),
    "request": _("Request compensation (Trust)"),
    "approve": _("Approve compensation"),
    "pause": _("Pause the clocks"),
    "resume": _("Resume the clocks"),
    "reassign": _("Reassign"),
    "close": _("Close"),
    "reopen": _("Reopen"),
    "activate": _("Open the draft"),
}
