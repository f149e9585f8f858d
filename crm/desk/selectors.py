"""Reads of the crisis desk: affected members, the board, and the reports."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, DateTimeField, Exists, ExpressionWrapper, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

from crm.desk import sla
from crm.desk.models import EventKind, Ticket, TicketEvent, TicketMember, TicketStatus
from members.models import EventKind as MemberEventKind
from members.models import MemberEvent

ACTIVE_STATUSES = (TicketStatus.OPEN, TicketStatus.PAUSED)
FOLLOW_UP_DAYS = 7


def group_member_ids(*, group: str) -> QuerySet:
    """Member ids of a community group now, set-based: members with a `group_join` event for the
    group (payload {"group": name}) and no `group_exit` from the same group after their latest join."""
    later_exit = MemberEvent.objects.filter(
        member_id=OuterRef("member_id"),
        kind=MemberEventKind.GROUP_EXIT,
        payload__group=group,
        occurred_at__gt=OuterRef("occurred_at"),
    )
    # A member is in the group if any of their joins has no exit after it, i.e. the latest one.
    return (
        MemberEvent.objects.filter(kind=MemberEventKind.GROUP_JOIN, payload__group=group)
        .filter(~Exists(later_exit))
        .values("member_id")
    )


def ticket_member_ids(*, ticket: Ticket) -> QuerySet:
    return TicketMember.objects.filter(ticket=ticket).values("member_id")


def sla_breaches_between(*, start: datetime, end: datetime) -> int:
    """Missed 3T deadlines recorded in [start, end) (the health dashboard's SLA figure)."""
    return TicketEvent.objects.filter(kind=EventKind.BREACHED, at__gte=start, at__lt=end).count()


def board_tickets(*, now: datetime | None = None, limit: int = 100) -> list[dict]:
    """Open and paused tickets, most severe and most urgent first, with their clocks, as plain data."""
    now = now or timezone.now()
    tickets = list(
        Ticket.objects.filter(status__in=ACTIVE_STATUSES).select_related("owner").order_by("-opened_at")[:limit]
    )
    rows = [ticket_data(ticket, now=now) for ticket in tickets]
    severity_rank = {"critical": 0, "high": 1, "medium": 2, "low": 3}

    def urgency(row: dict) -> tuple:
        pending = [c["seconds_left"] for c in row["clocks"] if c["done_at"] is None]
        return (severity_rank.get(row["severity"], 9), min(pending) if pending else 10**9)

    return sorted(rows, key=urgency)


def ticket_data(ticket: Ticket, *, now: datetime) -> dict:
    clocks = sla.ticket_clocks(ticket, now=now)
    return {
        "id": ticket.pk,
        "title": ticket.title,
        "severity": ticket.severity,
        "severity_label": str(ticket.get_severity_display()),
        "status": ticket.status,
        "status_label": str(ticket.get_status_display()),
        "owner": ticket.owner.get_username() if ticket.owner_id else "",
        "affected": ticket.affected_count,
        "compensation_status": ticket.compensation_status,
        "compensation_status_label": str(ticket.get_compensation_status_display()),
        "compensation_issued": ticket.compensation_issued,
        "opened_at": ticket.opened_at.isoformat() if ticket.opened_at else None,
        "paused": ticket.status == TicketStatus.PAUSED,
        "clocks": [
            {
                "name": clock.name,
                "due_at": clock.due_at.isoformat(),
                "done_at": clock.done_at.isoformat() if clock.done_at else None,
                "state": clock.state,
                "seconds_left": clock.seconds_left,
            }
            for clock in clocks
        ],
    }


@dataclass(frozen=True)
class TicketReport:
    ticket_id: int
    title: str
    severity: str
    opened_at: datetime
    affected: int
    minutes_to: dict  # clock -> minutes from opening to done, or None
    breached: list  # clocks missed
    points: int
    coupons: int
    exit_rate: float | None  # share of affected members who left a group within a week of opening
    complaint_rate: float | None  # share who complained within that week


def desk_report(*, start: datetime, end: datetime) -> list[TicketReport]:
    """Per ticket opened in [start, end): time to each T, breaches, compensation cost, and the exit and
    complaint rates of its affected members in the week after opening. Five queries however many tickets."""
    from loyalty.models import Coupon, PointsEntry

    tickets = list(Ticket.objects.filter(opened_at__gte=start, opened_at__lt=end).order_by("opened_at"))
    if not tickets:
        return []
    breaches: dict[int, list] = {}
    for ticket_id, clock in TicketEvent.objects.filter(ticket__in=tickets, kind=EventKind.BREACHED).values_list(
        "ticket_id", "clock"
    ):
        breaches.setdefault(ticket_id, []).append(clock)
    follow_up = {
        row["ticket_id"]: row
        for row in TicketMember.objects.filter(ticket__in=tickets)
        .values("ticket_id")
        .annotate(
            exits=Count("member_id", filter=Q(_did_within_follow_up(MemberEventKind.GROUP_EXIT))),
            complaints=Count("member_id", filter=Q(_did_within_follow_up(MemberEventKind.COMPLAINT))),
        )
    }
    points = dict(
        PointsEntry.objects.filter(source_ref__in=[ticket.source_ref for ticket in tickets])
        .values("source_ref")
        .annotate(total=Sum("amount"))
        .values_list("source_ref", "total")
    )
    coupons = {
        (batch_id, issue_key): count
        for batch_id, issue_key, count in Coupon.objects.filter(
            batch_id__in={ticket.compensation_batch_id for ticket in tickets if ticket.compensation_batch_id},
            issue_key__in=[ticket.source_ref for ticket in tickets],
        )
        .values("batch_id", "issue_key")
        .annotate(count=Count("pk"))
        .values_list("batch_id", "issue_key", "count")
    }
    reports = []
    for ticket in tickets:
        count = ticket.affected_count
        followed = follow_up.get(ticket.pk, {"exits": 0, "complaints": 0})
        reports.append(
            TicketReport(
                ticket_id=ticket.pk,
                title=ticket.title,
                severity=ticket.severity,
                opened_at=ticket.opened_at,
                affected=count,
                minutes_to={
                    name: _minutes(ticket.opened_at, getattr(ticket, f"{name}_done_at")) for name in sla.CLOCKS
                },
                breached=sorted(breaches.get(ticket.pk, [])),
                points=points.get(ticket.source_ref) or 0,
                coupons=coupons.get((ticket.compensation_batch_id, ticket.source_ref), 0),
                exit_rate=followed["exits"] / count if count else None,
                complaint_rate=followed["complaints"] / count if count else None,
            )
        )
    return reports


def _did_within_follow_up(kind: str) -> Exists:
    """The affected member (a TicketMember row) had an event of `kind` in the week after the ticket opened."""
    opened = OuterRef("ticket__opened_at")
    return Exists(
        MemberEvent.objects.filter(
            member_id=OuterRef("member_id"),
            kind=kind,
            occurred_at__gte=opened,
            occurred_at__lt=ExpressionWrapper(opened + timedelta(days=FOLLOW_UP_DAYS), output_field=DateTimeField()),
        )
    )


def _minutes(start: datetime, end: datetime | None) -> float | None:
    return round((end - start).total_seconds() / 60, 1) if end else None


@dataclass(frozen=True)
class ReportSummary:
    tickets: int
    average_minutes: dict  # clock -> average minutes to done, over the tickets that did it
    breach_rate: dict  # clock -> share of tickets whose clock was missed
    points: int
    points_yuan: float | None
    coupons: int
    exit_rate: float | None  # over all affected members of these tickets
    complaint_rate: float | None


def report_summary(rows: list[TicketReport]) -> ReportSummary:
    from loyalty.models import LoyaltySettings

    average, breach_rate = {}, {}
    for name in sla.CLOCKS:
        done = [row.minutes_to[name] for row in rows if row.minutes_to[name] is not None]
        average[name] = round(sum(done) / len(done), 1) if done else None
        breach_rate[name] = sum(name in row.breached for row in rows) / len(rows) if rows else None
    points = sum(row.points for row in rows)
    affected = sum(row.affected for row in rows if row.exit_rate is not None)

    def weighted(attribute: str) -> float | None:
        if not affected:
            return None
        return sum(getattr(row, attribute) * row.affected for row in rows if row.exit_rate is not None) / affected

    return ReportSummary(
        tickets=len(rows),
        average_minutes=average,
        breach_rate=breach_rate,
        points=points,
        points_yuan=round(points / LoyaltySettings.load().points_per_yuan, 2) if rows else None,
        coupons=sum(row.coupons for row in rows),
        exit_rate=weighted("exit_rate"),
        complaint_rate=weighted("complaint_rate"),
    )
