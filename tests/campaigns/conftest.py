from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def now() -> datetime:
    # A Monday morning, outside the quiet hours.
    return datetime(2026, 3, 16, 10, 0, tzinfo=SHANGHAI)


@pytest.fixture
def members(db):
    from tests.factories import MemberFactory

    return [MemberFactory(email=f"m{i}@example.com") for i in range(3)]
