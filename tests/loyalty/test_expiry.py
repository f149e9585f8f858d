from datetime import UTC, datetime

import pytest

from loyalty.expiry import ExpiryPolicy, expiry_for
from tests.loyalty.conftest import SHANGHAI


def local(*args) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("earned_at", "period", "expected"),
    [
        # The default: valid through the end of the 12th month after the month of earning.
        (local(2026, 3, 15, 10, 0), 12, local(2027, 4, 1)),
        (local(2026, 12, 31, 23, 59), 12, local(2028, 1, 1)),
        (local(2026, 1, 1, 0, 0), 11, local(2027, 1, 1)),
        (local(2026, 3, 15), 0, local(2026, 4, 1)),
        (local(2026, 11, 2), 1, local(2027, 1, 1)),
    ],
)
def test_end_of_month_policy(earned_at, period, expected):
    assert expiry_for(earned_at=earned_at, policy=ExpiryPolicy.END_OF_MONTH, period=period) == expected


def test_months_are_counted_from_the_local_date_not_utc():
    # 2026-03-31 17:00 UTC is already 1 April in Shanghai: the April lot lives a month longer.
    earned_at = datetime(2026, 3, 31, 17, 0, tzinfo=UTC)
    assert expiry_for(earned_at=earned_at, policy=ExpiryPolicy.END_OF_MONTH, period=12) == local(2027, 5, 1)


def test_days_policy_ends_at_local_midnight():
    assert expiry_for(earned_at=local(2026, 3, 15, 10, 0), policy=ExpiryPolicy.DAYS, period=30) == local(2026, 4, 15)
    assert expiry_for(earned_at=local(2026, 3, 15, 23, 59), policy=ExpiryPolicy.DAYS, period=0) == local(2026, 3, 16)


def test_never_policy_has_no_expiry():
    assert expiry_for(earned_at=local(2026, 3, 15), policy=ExpiryPolicy.NEVER, period=12) is None
