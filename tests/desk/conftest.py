from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def now() -> datetime:
    # Monday 16 March 2026, 10:00 in Shanghai.
    return datetime(2026, 3, 16, 10, 0, tzinfo=SHANGHAI)


@pytest.fixture
def members(db):
    from tests.factories import MemberFactory

    return MemberFactory.create_batch(4)


@pytest.fixture
def second_supervisor(db):
    from tests.factories import UserFactory

    return UserFactory(username="supervisor2", roles=["Supervisor"], email="sup2@example.com")


@pytest.fixture
def open_ticket(members, operator, now):
    """An opened ticket (high severity: Tell 15 min, Time 1 h, Trust 24 h) for the four members."""
    from crm.desk.services import ticket_open

    return ticket_open(
        title="Late deliveries in Shanghai",
        description="Orders of 14 March are two days late.",
        severity="high",
        source="staff",
        opened_by=operator,
        member_numbers=[m.external_id for m in members],
        now=now,
    )
