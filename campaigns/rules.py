"""Pure scheduling rules of the outbox (no database): quiet hours, cap windows, back-off."""

import math
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


# Deterministic A/B assignment. The same integer arithmetic runs in SQL (planning, set-based) and
# here (tests, previews): two rounds of multiplication modulo primes, which spread consecutive
# member ids evenly over 10,000 buckets and stay inside 64-bit integers on PostgreSQL and SQLite.
BUCKETS = 10_000


def assignment_bucket(*, campaign_id: int, member_id: int) -> int:
    mixed = ((member_id % 2147483647) * 1103515245 + campaign_id * 12345) % 2147483629
    return (mixed * 1664525 + 1013904223) % 2147483587 % BUCKETS


def assignment_bucket_sql(*, campaign_id: int, column: str = "member_id") -> str:
    """The same bucket as a SQL expression, for a statement executed with parameters (hence %%)."""
    campaign_id = int(campaign_id)
    return (
        f"(((((({column}) %% 2147483647) * 1103515245 + {campaign_id} * 12345) %% 2147483629) "
        f"* 1664525 + 1013904223) %% 2147483587 %% {BUCKETS})"
    )


def variant_ranges(*, holdout_percent: int, weights: list[int]) -> tuple[int, list[tuple[int, int]]]:
    """The holdout's buckets [0, h) and each variant's [lo, hi), splitting the rest by weight."""
    holdout = holdout_percent * BUCKETS // 100
    total = sum(weights)
    ranges, low, acc = [], holdout, 0
    for weight in weights:
        acc += weight
        high = holdout + (BUCKETS - holdout) * acc // total
        ranges.append((low, high))
        low = high
    return holdout, ranges


def two_proportion_test(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float] | None:
    """z and the two-sided p-value of 'rate 1 differs from rate 2'; None without data."""
    if not n1 or not n2:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance <= 0:
        return None
    z = (x1 / n1 - x2 / n2) / math.sqrt(variance)
    return z, math.erfc(abs(z) / math.sqrt(2))
