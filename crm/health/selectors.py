"""Read queries of the health dashboard: each indicator as a few set-based aggregates over the
behaviour log, members, the outbox and points (no loop over members), plus the dashboard reads."""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from crm.health.models import Alarm, DashboardTask, HealthSnapshot
from members.models import INTERACTION_KINDS, EventKind, Member, MemberEvent

STREAK_DAYS = 7
HUNDRED = Decimal(100)
TWO_PLACES = Decimal("0.01")


def percent(part: int | Decimal, whole: int | Decimal) -> Decimal | None:
    """part / whole in percent with two decimals; None when there is nothing to divide by."""
    if not whole:
        return None
    return (Decimal(part) * HUNDRED / Decimal(whole)).quantize(TWO_PLACES, rounding=ROUND_HALF_UP)


def local_day_start(day: date) -> datetime:
    """The first instant of a local (settings.TIME_ZONE) day, as an aware datetime."""
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_default_timezone())


@dataclass(frozen=True)
class GroupExits:
    members: int  # in a group at the start of the window, plus those who joined during it
    exits: int

    @property
    def rate(self) -> Decimal | None:
        return percent(self.exits, self.members)


def group_exits(*, start: datetime, end: datetime) -> GroupExits:
    """Exits in [start, end) per group member.

    Membership is counted from the log: joins minus exits before `start`, plus joins in the
    window. Two index range scans on (kind, occurred_at)."""
    group_kinds = [EventKind.GROUP_JOIN, EventKind.GROUP_EXIT]
    before = MemberEvent.objects.filter(kind__in=group_kinds, occurred_at__lt=start).aggregate(
        joins=Count("pk", filter=Q(kind=EventKind.GROUP_JOIN)),
        exits=Count("pk", filter=Q(kind=EventKind.GROUP_EXIT)),
    )
    during = MemberEvent.objects.filter(kind__in=group_kinds, occurred_at__gte=start, occurred_at__lt=end).aggregate(
        joins=Count("pk", filter=Q(kind=EventKind.GROUP_JOIN)),
        exits=Count("pk", filter=Q(kind=EventKind.GROUP_EXIT)),
    )
    members = max(before["joins"] - before["exits"], 0) + during["joins"]
    return GroupExits(members=members, exits=during["exits"])


def event_count(*, kind: str, start: datetime, end: datetime) -> int:
    return MemberEvent.objects.filter(kind=kind, occurred_at__gte=start, occurred_at__lt=end).count()


def daily_event_counts(*, kind: str, first_day: date, last_day: date) -> dict[date, int]:
    """Events of one kind per local day, for every day from first_day to last_day (zeros included)."""
    tz = timezone.get_default_timezone()
    rows = (
        MemberEvent.objects.filter(
            kind=kind,
            occurred_at__gte=local_day_start(first_day),
            occurred_at__lt=local_day_start(last_day + timedelta(days=1)),
        )
        .annotate(day=TruncDate("occurred_at", tzinfo=tz))
        .values("day")
        .annotate(events=Count("pk"))
        .values_list("day", "events")
    )
    counts = dict(rows)
    days = (last_day - first_day).days + 1
    return {first_day + timedelta(days=i): counts.get(first_day + timedelta(days=i), 0) for i in range(days)}


@dataclass(frozen=True)
class Activity:
    members: int
    active: int

    @property
    def rate(self) -> Decimal | None:
        return percent(self.active, self.members)


def activity(*, start: datetime, end: datetime) -> Activity:
    """Members who joined before `end`, and how many of them interacted in [start, end)."""
    members = Member.objects.filter(joined_at__lt=end).count()
    active = MemberEvent.objects.filter(
        kind__in=INTERACTION_KINDS, occurred_at__gte=start, occurred_at__lt=end
    ).aggregate(active=Count("member_id", distinct=True))["active"]
    return Activity(members=members, active=active)


@dataclass(frozen=True)
class CheckInStreaks:
    members: int  # checked in at least once in the 7 days
    streaks: int  # checked in on each of the 7 days

    @property
    def share(self) -> Decimal | None:
        return percent(self.streaks, self.members)


def check_in_streaks(*, last_day: date) -> CheckInStreaks:
    """Members who checked in during the 7 local days ending on last_day, and how many did on all 7."""
    tz = timezone.get_default_timezone()
    per_member = (
        MemberEvent.objects.filter(
            kind=EventKind.CHECK_IN,
            occurred_at__gte=local_day_start(last_day - timedelta(days=STREAK_DAYS - 1)),
            occurred_at__lt=local_day_start(last_day + timedelta(days=1)),
        )
        .annotate(day=TruncDate("occurred_at", tzinfo=tz))
        .values("member_id")
        .annotate(days=Count("day", distinct=True))
    )
    totals = per_member.aggregate(
        members=Count("member_id"), streaks=Count("member_id", filter=Q(days__gte=STREAK_DAYS))
    )
    return CheckInStreaks(members=totals["members"], streaks=totals["streaks"])


@dataclass(frozen=True)
class Value:
    ltv: Decimal | None  # spend per paying member
    average_order_value: Decimal | None

    @property
    def multiple(self) -> Decimal | None:
        if self.ltv is None or not self.average_order_value:
            return None
        return (self.ltv / self.average_order_value).quantize(TWO_PLACES, rounding=ROUND_HALF_UP)


def member_value() -> Value:
    """LTV and average order value from the member rollups (kept current on ingest, rebuilt nightly)."""
    totals = Member.objects.filter(orders_count__gt=0).aggregate(
        spent=Sum("total_spent"), orders=Sum("orders_count"), payers=Count("pk")
    )
    if not totals["payers"]:
        return Value(ltv=None, average_order_value=None)
    spent = totals["spent"] or Decimal(0)
    return Value(
        ltv=(spent / totals["payers"]).quantize(TWO_PLACES, rounding=ROUND_HALF_UP),
        average_order_value=(spent / totals["orders"]).quantize(TWO_PLACES, rounding=ROUND_HALF_UP),
    )


@dataclass(frozen=True)
class Opens:
    sent: int
    opened: int

    @property
    def rate(self) -> Decimal | None:
        return percent(self.opened, self.sent)


def message_opens(*, start: datetime, end: datetime) -> Opens:
    """Outbox messages sent in [start, end) and how many of them were opened (so far)."""
    from campaigns.models import Delivery

    totals = Delivery.objects.filter(sent_at__gte=start, sent_at__lt=end).aggregate(
        sent=Count("pk"), opened=Count("pk", filter=Q(opened_at__isnull=False))
    )
    return Opens(**totals)


@dataclass(frozen=True)
class ChannelAttempts:
    channel: str
    attempts: int
    failures: int

    @property
    def failure_rate(self) -> Decimal | None:
        return percent(self.failures, self.attempts)


def channel_attempts(*, since: datetime) -> list[ChannelAttempts]:
    """Per channel, the deliveries last tried since `since` and how many of those tries failed.

    A try that failed leaves the row queued for a retry or failed, with its error; a try that
    worked leaves it sent (or later delivered, opened, clicked) with no error. Reads the
    (status, claimed_at) index."""
    from campaigns.models import Delivery, DeliveryStatus

    tried = [
        DeliveryStatus.QUEUED,
        DeliveryStatus.FAILED,
        DeliveryStatus.SENT,
        DeliveryStatus.DELIVERED,
        DeliveryStatus.OPENED,
        DeliveryStatus.CLICKED,
    ]
    failed = Q(status__in=[DeliveryStatus.QUEUED, DeliveryStatus.FAILED]) & ~Q(last_error="")
    # A queued row without an error was deferred by quiet hours, not tried.
    # Rows that went out through a fallback channel say nothing about their own channel's gateway.
    rows = (
        Delivery.objects.filter(status__in=tried, claimed_at__gte=since, sent_via="")
        .exclude(status=DeliveryStatus.QUEUED, last_error="")
        .values("channel")
        .annotate(attempts=Count("pk"), failures=Count("pk", filter=failed))
        .order_by("channel")
    )
    return [ChannelAttempts(**row) for row in rows]


def sla_breaches(*, start: datetime, end: datetime) -> int:
    """3T deadlines (Tell, Time, Trust) of crisis tickets missed in [start, end): the desk records
    each breach once on the ticket's timeline (index on kind, at)."""
    from crm.desk.models import EventKind as TicketEventKind
    from crm.desk.models import TicketEvent

    return TicketEvent.objects.filter(kind=TicketEventKind.BREACHED, at__gte=start, at__lt=end).count()


CHART_FIELDS = [
    "activity_rate",
    "ltv_multiple",
    "open_rate",
    "streak_share",
    "exit_rate",
    "group_messages",
    "complaints",
    "points_liability_yuan",
    "sla_breaches",
]


def snapshot_latest() -> HealthSnapshot | None:
    return HealthSnapshot.objects.order_by("-day").first()


def chart_series(*, first_day: date) -> dict:
    """Plain lists for json_script: one label per day since first_day and one list per indicator
    (None for no data). Reads tuples, not model instances: a year is 365 rows."""
    rows = HealthSnapshot.objects.filter(day__gte=first_day).order_by("day").values_list("day", *CHART_FIELDS)
    columns = list(zip(*rows, strict=True)) or [[] for _ in range(len(CHART_FIELDS) + 1)]

    def number(value):
        return None if value is None else float(value)

    return {
        "labels": [day.isoformat() for day in columns[0]],
        **{name: [number(value) for value in columns[i + 1]] for i, name in enumerate(CHART_FIELDS)},
    }


def alarms_needing_attention() -> QuerySet[Alarm]:
    """Alarms not resolved yet, newest first (a partial index covers it)."""
    return Alarm.objects.filter(resolved_at__isnull=True).select_related("acknowledged_by").order_by("-raised_at")


def open_tasks() -> QuerySet[DashboardTask]:
    return DashboardTask.objects.filter(status=DashboardTask.Status.OPEN).order_by("-created_at", "-id")
