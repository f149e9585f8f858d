"""Writes of the health dashboard: daily snapshots, alarm checks and what alarms do, and staff
acknowledging and resolving alarms."""

import logging
from collections.abc import Callable
from datetime import date, datetime, timedelta

from django.conf import settings as django_settings
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from crm.core.exceptions import ApplicationError
from crm.health import selectors
from crm.health.models import Alarm, AlarmKind, DashboardTask, HealthSettings, HealthSnapshot
from members.models import EventKind

logger = logging.getLogger(__name__)


# Snapshots.


def snapshot_take(*, day: date | None = None, now: datetime | None = None) -> HealthSnapshot:
    """Compute the indicators of one local day (yesterday by default) and store them, replacing
    an earlier computation of the same day.

    Rates over a window use the `window_days` days ending with `day`. LTV, average order value and
    points liability exist only as they stand now (member rollups, points balances): the nightly
    run just after midnight records them for the day that ended; an older day gets none."""
    now = now or timezone.now()
    yesterday = timezone.localdate(now) - timedelta(days=1)
    day = day or yesterday
    current = day >= yesterday
    config = HealthSettings.load()
    start = selectors.local_day_start(day)
    end = selectors.local_day_start(day + timedelta(days=1))
    window_start = selectors.local_day_start(day - timedelta(days=config.window_days - 1))

    active = selectors.activity(start=window_start, end=end)
    value = selectors.member_value() if current else selectors.Value(ltv=None, average_order_value=None)
    opens = selectors.message_opens(start=window_start, end=end)
    streaks = selectors.check_in_streaks(last_day=day)
    exits = selectors.group_exits(start=window_start, end=end)
    from loyalty.selectors import points_liability

    liability = points_liability() if current else None
    values = {
        "members": active.members,
        "active_members": active.active,
        "activity_rate": active.rate,
        "ltv": value.ltv,
        "average_order_value": value.average_order_value,
        "ltv_multiple": value.multiple,
        "messages_sent": opens.sent,
        "messages_opened": opens.opened,
        "open_rate": opens.rate,
        "check_in_members": streaks.members,
        "streak_members": streaks.streaks,
        "streak_share": streaks.share,
        "group_members": exits.members,
        "group_exits": exits.exits,
        "exit_rate": exits.rate,
        "group_messages": selectors.event_count(kind=EventKind.GROUP_MESSAGE, start=start, end=end),
        "complaints": selectors.event_count(kind=EventKind.COMPLAINT, start=start, end=end),
        "points_liability": liability.points if liability else None,
        "points_liability_yuan": liability.yuan if liability else None,
        "sla_breaches": selectors.sla_breaches(start=start, end=end),
        "computed_at": now,
    }
    snapshot, _created = HealthSnapshot.objects.update_or_create(day=day, defaults=values)
    return snapshot


def snapshots_backfill(*, days: int, now: datetime | None = None) -> int:
    """Take the snapshots missing among the last `days` days (a new install, days the job did
    not run); days already recorded are kept. Returns how many were taken. One day at a time:
    each is a few set-based aggregates."""
    if days < 1 or days > 3 * 366:
        raise ApplicationError(_("Backfill between 1 and 1098 days."))
    now = now or timezone.now()
    yesterday = timezone.localdate(now) - timedelta(days=1)
    wanted = {yesterday - timedelta(days=i) for i in range(days)}
    recorded = set(HealthSnapshot.objects.filter(day__in=wanted).values_list("day", flat=True))
    missing = sorted(wanted - recorded)
    for day in missing:
        snapshot_take(day=day, now=now)
    return len(missing)


# Alarm checks.


def _episode(
    *, kind: str, subject: str = "", measured: dict | None, now: datetime, act: Callable[[Alarm], list[dict]]
) -> Alarm | None:
    """Raise, keep or clear the one open episode of (kind, subject).

    `measured` is None when the condition does not hold. A new episode runs `act` once and records
    what it returned. The settings row is locked first so that two checks running at once cannot
    both raise the same episode (the partial unique constraint is the backstop)."""
    with transaction.atomic():
        HealthSettings.objects.select_for_update().filter(pk=HealthSettings.SINGLETON_ID).first()
        episode = Alarm.objects.select_for_update().filter(kind=kind, subject=subject, cleared_at__isnull=True).first()
        if measured is None:
            if episode is not None:
                episode.cleared_at = now
                episode.save(update_fields=["cleared_at"])
            return None
        if episode is not None:
            episode.last_seen_at = now
            episode.measured = measured
            episode.save(update_fields=["last_seen_at", "measured"])
            return None
        alarm = Alarm.objects.create(kind=kind, subject=subject, raised_at=now, last_seen_at=now, measured=measured)
        alarm.actions = act(alarm)
        alarm.save(update_fields=["actions"])
        logger.warning("health alarm %s raised: %s %s", alarm.pk, kind, subject)
        return alarm


def _alert(alarm: Alarm, config: HealthSettings) -> dict:
    """E-mail the service lead once the alarm is committed; the record says whom."""
    lead = config.service_lead
    if lead is None or not lead.email or not lead.is_active:
        return {"action": "alert_skipped"}
    with translation.override(django_settings.LANGUAGE_CODE):
        subject = _("Health alarm: %(alarm)s") % {"alarm": alarm}
        body = _("%(alarm)s was raised at %(at)s.\n\nMeasured: %(measured)s\n\nOpen the health dashboard: %(url)s") % {
            "alarm": alarm,
            "at": timezone.localtime(alarm.raised_at).strftime("%Y-%m-%d %H:%M"),
            "measured": ", ".join(f"{key}={value}" for key, value in alarm.measured.items()),
            "url": reverse("health:dashboard"),
        }
    recipient = lead.email
    transaction.on_commit(lambda: send_mail(subject, body, None, [recipient], fail_silently=False))
    return {"action": "alerted", "user": lead.pk}


def _reason(alarm: Alarm) -> str:
    with translation.override(django_settings.LANGUAGE_CODE):
        return _("Health alarm #%(id)s: %(alarm)s") % {"id": alarm.pk, "alarm": alarm}


def check_quiet_groups(*, now: datetime, config: HealthSettings) -> Alarm | None:
    last_day = timezone.localdate(now) - timedelta(days=1)
    counts = selectors.daily_event_counts(
        kind=EventKind.GROUP_MESSAGE,
        first_day=last_day - timedelta(days=config.group_messages_days - 1),
        last_day=last_day,
    )
    quiet = all(count < config.group_messages_min for count in counts.values())
    measured = {
        "messages_per_day": {day.isoformat(): count for day, count in counts.items()},
        "limit": config.group_messages_min,
    }

    def act(alarm: Alarm) -> list[dict]:
        task = DashboardTask.objects.create(kind=DashboardTask.Kind.TOPIC_DAY, alarm=alarm, created_at=now)
        return [{"action": "task_created", "task": task.pk}]

    return _episode(kind=AlarmKind.QUIET_GROUPS, measured=measured if quiet else None, now=now, act=act)


def complaints_rising(*, current: int, previous: int, increase_percent: int, min_count: int) -> bool:
    """Up by `increase_percent` or more on the previous period, with at least `min_count` now."""
    if current < min_count:
        return False
    return current * 100 >= previous * (100 + increase_percent)


def check_complaints(*, now: datetime, config: HealthSettings) -> Alarm | None:
    period = timedelta(days=config.complaint_period_days)
    current = selectors.event_count(kind=EventKind.COMPLAINT, start=now - period, end=now)
    previous = selectors.event_count(kind=EventKind.COMPLAINT, start=now - 2 * period, end=now - period)
    rising = complaints_rising(
        current=current,
        previous=previous,
        increase_percent=config.complaint_increase_percent,
        min_count=config.complaint_min_count,
    )
    measured = {
        "complaints": current,
        "previous_period": previous,
        "period_days": config.complaint_period_days,
        "limit_percent": config.complaint_increase_percent,
    }

    def act(alarm: Alarm) -> list[dict]:
        from crm.desk.models import Severity, TicketSource
        from crm.desk.services import ticket_open

        with translation.override(django_settings.LANGUAGE_CODE):
            title = _("Complaints up: %(current)s in %(days)s days (previously %(previous)s)") % {
                "current": current,
                "days": config.complaint_period_days,
                "previous": previous,
            }
            description = _(
                "Raised by the health alarm #%(id)s. Check the recent complaints for a common cause, upgrade "
                "the service scripts, and follow the 3T SOP if members are complaining together."
            ) % {"id": alarm.pk}
        # A draft: staff choose the affected members and open it, which starts the 3T clocks.
        ticket = ticket_open(
            title=title,
            description=description,
            severity=Severity.HIGH,
            source=TicketSource.ALARM,
            draft=True,
            owner=config.service_lead,
            now=now,
        )
        return [{"action": "ticket_draft", "ticket": ticket.pk}, _alert(alarm, config)]

    return _episode(kind=AlarmKind.COMPLAINTS, measured=measured if rising else None, now=now, act=act)


def check_group_exits(*, now: datetime, config: HealthSettings) -> Alarm | None:
    exits = selectors.group_exits(start=now - timedelta(days=config.window_days), end=now)
    rate = exits.rate
    high = rate is not None and rate > config.exit_rate_max
    measured = {
        "exit_rate": str(rate),
        "exits": exits.exits,
        "group_members": exits.members,
        "window_days": config.window_days,
        "limit_percent": str(config.exit_rate_max),
    }

    def act(alarm: Alarm) -> list[dict]:
        from campaigns.services import campaigns_pause_promotions

        paused = campaigns_pause_promotions(reason=_reason(alarm), actor=None)
        return [{"action": "campaigns_paused", "campaigns": sorted(paused)}, _alert(alarm, config)]

    return _episode(kind=AlarmKind.GROUP_EXITS, measured=measured if high else None, now=now, act=act)


def check_channels(*, now: datetime, config: HealthSettings) -> list[Alarm]:
    attempts = selectors.channel_attempts(since=now - timedelta(minutes=config.channel_window_minutes))
    failing = {
        row.channel: row
        for row in attempts
        if row.attempts >= config.channel_min_attempts and row.failure_rate >= config.channel_failure_percent
    }
    subjects = set(failing) | set(
        Alarm.objects.filter(kind=AlarmKind.CHANNEL_FAILING, cleared_at__isnull=True).values_list("subject", flat=True)
    )
    raised = []
    for channel in sorted(subjects):
        row = failing.get(channel)
        measured = None
        if row is not None:
            measured = {
                "attempts": row.attempts,
                "failures": row.failures,
                "failure_rate": str(row.failure_rate),
                "window_minutes": config.channel_window_minutes,
                "limit_percent": str(config.channel_failure_percent),
            }

        def act(alarm: Alarm, channel=channel) -> list[dict]:
            from campaigns.services import channel_fallback_activate

            fallback = channel_fallback_activate(channel=channel, reason=_reason(alarm))
            if fallback is None:
                return [{"action": "no_fallback", "channel": channel}, _alert(alarm, config)]
            return [{"action": "fallback_on", "channel": channel, "fallback": fallback}, _alert(alarm, config)]

        alarm = _episode(kind=AlarmKind.CHANNEL_FAILING, subject=channel, measured=measured, now=now, act=act)
        if alarm is not None:
            raised.append(alarm)
    return raised


COMMUNITY_CHECKS = (check_quiet_groups, check_complaints, check_group_exits)


def alarms_check(*, checks=None, now: datetime | None = None) -> list[Alarm]:
    """Run the checks (community ones by default); return the alarms newly raised.

    A check that fails is logged and the others still run; the first error is raised at the end
    so that the task shows it."""
    now = now or timezone.now()
    config = HealthSettings.objects.select_related("service_lead").get_or_create(pk=HealthSettings.SINGLETON_ID)[0]
    raised: list[Alarm] = []
    first_error = None
    for check in checks or COMMUNITY_CHECKS:
        try:
            result = check(now=now, config=config)
        except Exception as error:  # noqa: BLE001 - one broken check must not silence the others
            logger.exception("health check %s failed", check.__name__)
            first_error = first_error or error
            continue
        if isinstance(result, list):
            raised.extend(result)
        elif result is not None:
            raised.append(result)
    if first_error is not None:
        raise first_error
    return raised


# Staff on alarms and tasks.


@transaction.atomic
def alarm_acknowledge(*, alarm_id: int, actor, note: str = "") -> Alarm:
    alarm = Alarm.objects.select_for_update().get(pk=alarm_id)
    if alarm.acknowledged_at is not None:
        raise ApplicationError(_("This alarm was acknowledged already."))
    alarm.acknowledged_at = timezone.now()
    alarm.acknowledged_by = actor
    fields = ["acknowledged_at", "acknowledged_by"]
    if note:
        alarm.note = note
        fields.append("note")
    alarm.save(update_fields=fields)
    return alarm


def _held_by_other_alarms(alarm: Alarm, action: str) -> list[dict]:
    """Actions of the same kind recorded by other unresolved alarms (their undo must not be ours)."""
    others = Alarm.objects.filter(resolved_at__isnull=True).exclude(pk=alarm.pk).values_list("actions", flat=True)
    return [entry for actions in others for entry in actions if entry.get("action") == action]


@transaction.atomic
def alarm_resolve(*, alarm_id: int, actor, note: str = "") -> Alarm:
    """Mark an alarm handled and undo what it did that can be undone: resume the campaigns it
    paused and switch its channel back from the fallback. Acknowledges it too."""
    alarm = Alarm.objects.select_for_update().get(pk=alarm_id)
    if alarm.resolved_at is not None:
        raise ApplicationError(_("This alarm was resolved already."))
    now = timezone.now()
    undone = []
    for entry in list(alarm.actions):
        if entry.get("action") == "campaigns_paused" and entry["campaigns"]:
            from campaigns.services import campaigns_resume

            kept = {pk for other in _held_by_other_alarms(alarm, "campaigns_paused") for pk in other["campaigns"]}
            ids = [pk for pk in entry["campaigns"] if pk not in kept]
            resumed = campaigns_resume(campaign_ids=ids, reason=_reason(alarm), actor=actor) if ids else []
            undone.append({"action": "campaigns_resumed", "campaigns": sorted(resumed), "at": now.isoformat()})
        elif entry.get("action") == "fallback_on":
            from campaigns.services import channel_fallback_clear

            channel = entry["channel"]
            if any(other["channel"] == channel for other in _held_by_other_alarms(alarm, "fallback_on")):
                continue
            channel_fallback_clear(channel=channel)
            undone.append({"action": "fallback_off", "channel": channel, "at": now.isoformat()})
    alarm.actions = [*alarm.actions, *undone]
    alarm.resolved_at = now
    alarm.resolved_by = actor
    fields = ["actions", "resolved_at", "resolved_by"]
    if alarm.acknowledged_at is None:
        alarm.acknowledged_at = now
        alarm.acknowledged_by = actor
        fields += ["acknowledged_at", "acknowledged_by"]
    if note:
        alarm.note = note
        fields.append("note")
    alarm.save(update_fields=fields)
    return alarm


@transaction.atomic
def dashboard_task_close(*, task_id: int, actor, status: str) -> DashboardTask:
    if status not in {DashboardTask.Status.DONE, DashboardTask.Status.DISMISSED}:
        raise ApplicationError(_("A task is closed as done or dismissed."))
    task = DashboardTask.objects.select_for_update().get(pk=task_id)
    if task.status != DashboardTask.Status.OPEN:
        raise ApplicationError(_("This task was closed already."))
    task.status = status
    task.closed_at = timezone.now()
    task.closed_by = actor
    task.save(update_fields=["status", "closed_at", "closed_by"])
    return task


@transaction.atomic
def health_settings_save(*, config: HealthSettings) -> HealthSettings:
    config.full_clean()
    config.save()
    return config
