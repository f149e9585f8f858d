"""The daily snapshot computes each indicator from the behaviour log, members, outbox and points."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns.models import Delivery, MessageCategory
from crm.health.models import HealthSettings, HealthSnapshot
from crm.health.services import snapshot_take
from members.models import EventKind
from tests.factories import MemberFactory
from tests.factories.campaigns import running_campaign
from tests.factories.loyalty import EarnFactory
from tests.health.conftest import at

pytestmark = pytest.mark.django_db

DAY = date(2026, 3, 15)  # the window of 7 days runs 9–15 March


@pytest.fixture
def members():
    return [MemberFactory(joined_at=at(1, month=2)) for _ in range(10)]


def test_snapshot_of_yesterday_measures_every_indicator(members, event, now):
    # Given: interactions in the window by members 0–2, only a purchase by member 3, and an
    # interaction of member 4 before the window.
    event(members[2], EventKind.MESSAGE_READ, at(10))
    event(members[3], EventKind.PURCHASE, at(12), amount=Decimal("50"))
    event(members[4], EventKind.INTERACTION, at(1), sub_kind="like")
    # Member 0 checked in on all 7 days (the last one late in the local evening), member 1 on 3.
    for day in range(9, 15):
        event(members[0], EventKind.CHECK_IN, at(day, 8))
    event(members[0], EventKind.CHECK_IN, at(15, 23, 30))
    for day in (9, 11, 13):
        event(members[1], EventKind.CHECK_IN, at(day, 8))
    # Groups: 5 joined and 1 left before the window (4 in), 1 joined and 1 left during it.
    for member in members[5:10]:
        event(member, EventKind.GROUP_JOIN, at(2))
    event(members[5], EventKind.GROUP_EXIT, at(3))
    event(members[1], EventKind.GROUP_JOIN, at(10))
    event(members[6], EventKind.GROUP_EXIT, at(14))
    # Group messages: 2 on the day; one the day before and one just after local midnight don't count.
    event(members[0], EventKind.GROUP_MESSAGE, at(15, 0, 5))
    event(members[1], EventKind.GROUP_MESSAGE, at(15, 20))
    event(members[1], EventKind.GROUP_MESSAGE, at(14, 20))
    event(members[1], EventKind.GROUP_MESSAGE, at(16, 0, 30))
    event(members[2], EventKind.COMPLAINT, at(15, 11))
    event(members[2], EventKind.COMPLAINT, at(13, 11))
    # Spend rollups: 300 yuan in 3 orders and 100 in 1: LTV 200, average order 100.
    members[0].__class__.objects.filter(pk=members[0].pk).update(total_spent=Decimal("300"), orders_count=3)
    members[0].__class__.objects.filter(pk=members[1].pk).update(total_spent=Decimal("100"), orders_count=1)
    # Outbox: 4 messages sent in the window, 1 opened; one sent before the window.
    campaign = running_campaign(members, category=MessageCategory.PROMOTIONAL)
    for i, member in enumerate(members[:5]):
        sent = at(8) if i == 4 else at(12 + i)
        Delivery.objects.create(
            campaign=campaign,
            member=member,
            channel="email",
            category=MessageCategory.PROMOTIONAL,
            status="opened" if i == 0 else "sent",
            scheduled_for=sent,
            next_attempt_at=sent,
            sent_at=sent,
            opened_at=sent + timedelta(hours=1) if i in (0, 4) else None,
        )
    EarnFactory(member=members[0], amount=500)

    # When
    snapshot = snapshot_take(now=now)

    # Then
    assert snapshot.day == DAY
    assert (snapshot.members, snapshot.active_members, snapshot.activity_rate) == (10, 3, Decimal("30.00"))
    assert (snapshot.ltv, snapshot.average_order_value, snapshot.ltv_multiple) == (
        Decimal("200.00"),
        Decimal("100.00"),
        Decimal("2.00"),
    )
    assert (snapshot.messages_sent, snapshot.messages_opened, snapshot.open_rate) == (4, 1, Decimal("25.00"))
    assert (snapshot.check_in_members, snapshot.streak_members, snapshot.streak_share) == (2, 1, Decimal("50.00"))
    assert (snapshot.group_members, snapshot.group_exits, snapshot.exit_rate) == (5, 1, Decimal("20.00"))
    assert snapshot.group_messages == 2
    assert snapshot.complaints == 1
    assert (snapshot.points_liability, snapshot.points_liability_yuan) == (500, Decimal("10.00"))


def test_sla_breaches_are_the_3t_deadlines_missed_that_day(now):
    from crm.desk.models import TicketEvent
    from crm.desk.services import ticket_open

    ticket = ticket_open(title="外卖延误", description="", severity="high", source="staff", draft=True)
    for clock, when in [("tell", at(15, 0, 10)), ("time", at(15, 23, 50)), ("trust", at(16, 0, 10))]:
        TicketEvent.objects.create(ticket=ticket, kind="breached", clock=clock, at=when)

    assert snapshot_take(now=now).sla_breaches == 2


def test_a_day_without_data_has_no_rates_rather_than_zero(now):
    snapshot = snapshot_take(now=now)

    assert snapshot.members == 0
    assert snapshot.activity_rate is None
    assert snapshot.open_rate is None
    assert snapshot.exit_rate is None
    assert snapshot.ltv_multiple is None
    assert snapshot.sla_breaches == 0


def test_the_window_follows_the_settings_and_recomputing_a_day_replaces_it(members, event, now):
    event(members[0], EventKind.CHECK_IN, at(12))
    assert snapshot_take(now=now).active_members == 1

    HealthSettings.objects.filter(pk=1).update(window_days=2)
    snapshot = snapshot_take(now=now)

    assert snapshot.active_members == 0
    assert HealthSnapshot.objects.filter(day=DAY).count() == 1


def test_the_nightly_task_takes_yesterdays_snapshot(members):
    from crm.health.tasks import take_health_snapshot

    assert take_health_snapshot() == (timezone.localdate() - timedelta(days=1)).isoformat()


def test_backfill_takes_the_missing_days_and_keeps_the_recorded_ones(members, event, now):
    from crm.core.exceptions import ApplicationError
    from crm.health.services import snapshots_backfill

    event(members[0], EventKind.GROUP_MESSAGE, at(13))
    EarnFactory(member=members[0], amount=500)
    kept = snapshot_take(day=date(2026, 3, 14), now=now)
    HealthSnapshot.objects.filter(pk=kept.pk).update(complaints=99)

    assert snapshots_backfill(days=3, now=now) == 2

    rows = {s.day: s for s in HealthSnapshot.objects.all()}
    assert sorted(rows) == [date(2026, 3, 13), date(2026, 3, 14), date(2026, 3, 15)]
    assert rows[date(2026, 3, 14)].complaints == 99
    assert rows[date(2026, 3, 13)].group_messages == 1
    # Balances and rollups have no history: only yesterday carries them.
    assert rows[date(2026, 3, 13)].points_liability is None and rows[date(2026, 3, 13)].ltv is None
    assert rows[date(2026, 3, 15)].points_liability == 500
    with pytest.raises(ApplicationError):
        snapshots_backfill(days=0, now=now)


def test_the_backfill_command_reports_what_it_took(members):
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    call_command("health_backfill", "--days", "5", stdout=out)
    assert out.getvalue().strip() == "health snapshots taken: 5"
    with pytest.raises(CommandError):
        call_command("health_backfill", "--days", "0")
