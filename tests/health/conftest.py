from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def now() -> datetime:
    # Monday 16 March 2026, 10:00 in Shanghai (outside quiet hours): "yesterday" is Sunday the 15th.
    return datetime(2026, 3, 16, 10, 0, tzinfo=SHANGHAI)


def at(day: int, hour: int = 12, minute: int = 0, month: int = 3) -> datetime:
    """A local (Shanghai) time in 2026."""
    return datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI)


@pytest.fixture
def event():
    """event(member, kind, when) records one behaviour event directly."""
    from tests.factories import MemberEventFactory

    def make(member, kind, when, **kwargs):
        kwargs.setdefault("amount", None)
        return MemberEventFactory(member=member, kind=kind, occurred_at=when, **kwargs)

    return make
