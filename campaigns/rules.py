"""Pure scheduling rules of the outbox (no database): quiet hours, cap windows, back-off."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

LOCAL = ZoneInfo("Asia/Shanghai")


def _in_quiet_hours(local: time, start: time, end: time) -> bool:
    if start == end:
        return False
    if start < end:  # e.g. 13:00–14:00
        return start <= local < end
    return local >= start or local < end  # spans midnight, e.g. 22:00–08:00


def quiet_hours_release(when: datetime, *, start: time, end: time) -> datetime | None:
    """When a message due at `when` may go, if `when` falls in the quiet hours; else None.

    Quiet hours defer, never drop: the message waits for the end of the quiet hours (local time).
    """
    local = when.astimezone(LOCAL)
    if not _in_quiet_hours(local.time(), start, end):
        return None
    release = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if release <= local:
        release += timedelta(days=1)
    return release


def local_day_bounds(when: datetime, *, days: int = 1) -> tuple[datetime, datetime]:
    """[start, end) of the `days` local days ending with the day of `when` (Asia/Shanghai)."""
    local = when.astimezone(LOCAL)
    day_end = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=LOCAL)
    day_start = datetime.combine(local.date() - timedelta(days=days - 1), time(0), tzinfo=LOCAL)
    return day_start, day_end


def planned_send_at(*, now: datetime, send_time: time | None) -> datetime:
    """A campaign starting now sends at its send time today (local), or at once if that has passed."""
    if send_time is None:
        return now
    local_now = now.astimezone(LOCAL)
    candidate = datetime.combine(local_now.date(), send_time, tzinfo=LOCAL)
    return max(candidate, now)


def retry_delay(*, attempts: int, base_seconds: int) -> timedelta:
    """Exponential back-off: base after the first failure, then 2x, 4x, … (capped at a day)."""
    return timedelta(seconds=min(base_seconds * 2 ** max(attempts - 1, 0), 86_400))
