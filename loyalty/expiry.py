"""When a lot of points expires, from the policy staff chose in the loyalty settings.

Pure date arithmetic with no database, so the rules are tested directly. Expiry instants fall
on a local midnight (the brand's time zone, settings.TIME_ZONE): members are told "valid until
the end of March", and one nightly job shortly after midnight catches a whole day's lots.
"""

from datetime import date, datetime, time, timedelta

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class ExpiryPolicy(models.TextChoices):
    END_OF_MONTH = "end_of_month", _("At the end of the Nth month after earning")
    DAYS = "days", _("At the end of the Nth day after earning")
    NEVER = "never", _("Never")


def expiry_for(*, earned_at: datetime, policy: str, period: int) -> datetime | None:
    """The first instant at which points earned at `earned_at` are no longer valid.

    `period` counts months (END_OF_MONTH) or days (DAYS) after the local date of earning; 0
    means the end of the earning month or day. None means the points never expire.
    """
    if policy == ExpiryPolicy.NEVER:
        return None
    tz = timezone.get_default_timezone()
    earned_on = timezone.localtime(earned_at, tz).date()
    if policy == ExpiryPolicy.END_OF_MONTH:
        # The month after the Nth month, counted from zero so divmod carries the years.
        years, month_index = divmod(earned_on.month - 1 + period + 1, 12)
        first_invalid_day = date(earned_on.year + years, month_index + 1, 1)
    elif policy == ExpiryPolicy.DAYS:
        first_invalid_day = earned_on + timedelta(days=period + 1)
    else:
        raise ValueError(f"unknown expiry policy {policy!r}")
    return timezone.make_aware(datetime.combine(first_invalid_day, time.min), tz)
