from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def now() -> datetime:
    return datetime(2026, 3, 15, 10, 0, tzinfo=SHANGHAI)


@pytest.fixture
def member(db):
    from tests.factories import MemberFactory

    return MemberFactory()
