"""Each alarm fires on its condition, once per episode, records what it did, and not without it."""

from datetime import timedelta

import pytest
from django.core import mail

from campaigns.models import Campaign, CampaignStatus, ChannelConfig, Delivery, MessageCategory
from campaigns.outbox import deliveries_dispatch, deliveries_plan
from crm.core.exceptions import ApplicationError
from crm.health.models import Alarm, AlarmKind, DashboardTask, HealthSettings
from crm.health.services import (
    alarm_acknowledge,
    alarm_resolve,
    alarms_check,
    check_channels,
    check_complaints,
    check_group_exits,
    check_quiet_groups,
    complaints_rising,
)
from members.models import EventKind, MemberEvent
from tests.campaigns.test_dispatch import Gateway, _configure
from tests.factories import MemberFactory, UserFactory
from tests.factories.campaigns import running_campaign
from tests.health.conftest import at

pytestmark = pytest.mark.django_db


@pytest.fixture
def member():
    return MemberFactory(email="member@example.com")


@pytest.fixture
def lead():
    lead = UserFactory(username="lead", email="lead@example.com", roles=["Supervisor"])
    HealthSettings.objects.filter(pk=1).update(service_lead=lead)
    return lead


def _events(member, kind, when, count):
    MemberEvent.objects.bulk_create(
        [
            MemberEvent(
                member=member,
                kind=kind,
                occurred_at=when + timedelta(seconds=i),
                source="test",
                external_id=f"{kind}-{when.isoformat()}-{i}",
            )
            for i in range(count)
        ]
    )


def _check(check, now):
    return alarms_check(checks=[check], now=now)


# Quiet groups → topic day -------------------------------------------------------------------


def test_three_quiet_days_suggest_one_topic_day(member, now):
    for day in (13, 14, 15):
        _events(member, EventKind.GROUP_MESSAGE, at(day), 49)

    raised = _check(check_quiet_groups, now)

    assert [alarm.kind for alarm in raised] == [AlarmKind.QUIET_GROUPS]
    task = DashboardTask.objects.get()
    assert (task.kind, task.status, task.alarm) == (DashboardTask.Kind.TOPIC_DAY, DashboardTask.Status.OPEN, raised[0])
    assert raised[0].actions == [{"action": "task_created", "task": task.pk}]
    assert raised[0].measured["messages_per_day"] == {"2026-03-13": 49, "2026-03-14": 49, "2026-03-15": 49}
    # The next checks, while the groups stay quiet, keep the same episode.
    assert _check(check_quiet_groups, now + timedelta(hours=1)) == []
    assert (Alarm.objects.count(), DashboardTask.objects.count()) == (1, 1)


def test_one_lively_day_among_three_raises_nothing(member, now):
    _events(member, EventKind.GROUP_MESSAGE, at(13), 49)
    _events(member, EventKind.GROUP_MESSAGE, at(14), 50)
    _events(member, EventKind.GROUP_MESSAGE, at(15), 49)

    assert _check(check_quiet_groups, now) == []
    assert not Alarm.objects.exists() and not DashboardTask.objects.exists()


def test_the_limit_and_the_days_are_staff_settings(member, now):
    for day in (13, 14, 15):
        _events(member, EventKind.GROUP_MESSAGE, at(day), 10)
    HealthSettings.objects.filter(pk=1).update(group_messages_min=10)
    assert _check(check_quiet_groups, now) == []

    HealthSettings.objects.filter(pk=1).update(group_messages_min=11, group_messages_days=4)  # the 12th had none
    assert len(_check(check_quiet_groups, now)) == 1


def test_a_new_episode_after_the_condition_cleared_raises_again(member, now):
    for day in (13, 14, 15):
        _events(member, EventKind.GROUP_MESSAGE, at(day), 5)
    first = _check(check_quiet_groups, now)[0]
    _events(member, EventKind.GROUP_MESSAGE, at(16), 80)

    assert _check(check_quiet_groups, now + timedelta(days=1)) == []  # the 16th was lively
    first.refresh_from_db()
    assert first.cleared_at == now + timedelta(days=1)

    second = _check(check_quiet_groups, now + timedelta(days=4))  # 17th–19th quiet again
    assert len(second) == 1 and second[0].pk != first.pk
    assert DashboardTask.objects.count() == 2


# Complaints up 30% → service lead alerted, crisis ticket draft ------------------------------------


@pytest.mark.parametrize(
    ("current", "previous", "rising"),
    [(13, 10, True), (12, 10, False), (5, 0, True), (4, 0, False), (4, 1, False), (0, 0, False)],
)
def test_complaints_rising_means_up_30_percent_with_at_least_5(current, previous, rising):
    assert complaints_rising(current=current, previous=previous, increase_percent=30, min_count=5) is rising


def test_rising_complaints_alert_the_service_lead_and_open_a_crisis_ticket_draft(
    member, lead, now, django_capture_on_commit_callbacks
):
    from crm.desk.models import Ticket

    _events(member, EventKind.COMPLAINT, now - timedelta(days=10), 10)
    _events(member, EventKind.COMPLAINT, now - timedelta(days=2), 13)

    with django_capture_on_commit_callbacks(execute=True):
        raised = _check(check_complaints, now)

    alarm = raised[0]
    ticket = Ticket.objects.get()
    assert (ticket.status, ticket.source, ticket.severity, ticket.owner) == ("draft", "alarm", "high", lead)
    assert alarm.actions == [{"action": "ticket_draft", "ticket": ticket.pk}, {"action": "alerted", "user": lead.pk}]
    assert [message.to for message in mail.outbox] == [["lead@example.com"]]
    assert "Complaints rising" in mail.outbox[0].subject
    assert _check(check_complaints, now + timedelta(hours=1)) == []
    assert Ticket.objects.count() == 1 and len(mail.outbox) == 1


def test_steady_complaints_raise_nothing(member, lead, now):
    _events(member, EventKind.COMPLAINT, now - timedelta(days=10), 10)
    _events(member, EventKind.COMPLAINT, now - timedelta(days=2), 12)

    assert _check(check_complaints, now) == []
    assert mail.outbox == []


# Group exits over 8% → promotions paused (reversible), alert ---------------------------------------


def _groups(now, *, members: int, exits: int):
    people = [MemberFactory() for _ in range(members)]
    for person in people:
        MemberEvent.objects.create(
            member=person,
            kind=EventKind.GROUP_JOIN,
            occurred_at=now - timedelta(days=30),
            source="test",
            external_id=f"join-{person.pk}",
        )
    for person in people[:exits]:
        MemberEvent.objects.create(
            member=person,
            kind=EventKind.GROUP_EXIT,
            occurred_at=now - timedelta(days=1),
            source="test",
            external_id=f"exit-{person.pk}",
        )


def test_exits_over_8_percent_pause_running_promotions_until_resolved(
    lead, supervisor, now, django_capture_on_commit_callbacks
):
    _groups(now, members=100, exits=9)
    audience = [MemberFactory(email=f"m{i}@example.com") for i in range(3)]
    promotion = running_campaign(audience)
    notice = running_campaign(audience, category=MessageCategory.TRANSACTIONAL)
    deliveries_plan(campaign=promotion, now=now)

    with django_capture_on_commit_callbacks(execute=True):
        [alarm] = _check(check_group_exits, now)

    assert alarm.actions == [
        {"action": "campaigns_paused", "campaigns": [promotion.pk]},
        {"action": "alerted", "user": lead.pk},
    ]
    assert alarm.measured["exit_rate"] == "9.00"
    assert Campaign.objects.get(pk=notice.pk).status == CampaignStatus.RUNNING
    assert [message.to for message in mail.outbox] == [["lead@example.com"]]
    # A paused campaign sends nothing, however often the outbox runs, and the alarm is not re-fired.
    assert deliveries_dispatch(now=now).sent == 0
    assert _check(check_group_exits, now + timedelta(hours=1)) == []
    assert deliveries_dispatch(now=now + timedelta(hours=1)).sent == 0
    assert set(Delivery.objects.filter(campaign=promotion).values_list("status", flat=True)) == {"queued"}

    alarm_resolve(alarm_id=alarm.pk, actor=supervisor)

    alarm.refresh_from_db()
    assert Campaign.objects.get(pk=promotion.pk).status == CampaignStatus.RUNNING
    assert alarm.actions[-1]["action"] == "campaigns_resumed"
    assert alarm.actions[-1]["campaigns"] == [promotion.pk]
    assert (alarm.resolved_by, alarm.acknowledged_by) == (supervisor, supervisor)
    assert deliveries_dispatch(now=now + timedelta(hours=1)).sent == 3


def test_exits_at_8_percent_pause_nothing(now):
    _groups(now, members=100, exits=8)
    promotion = running_campaign([MemberFactory()])

    assert _check(check_group_exits, now) == []
    assert Campaign.objects.get(pk=promotion.pk).status == CampaignStatus.RUNNING


def test_resolving_leaves_campaigns_another_open_alarm_paused(supervisor, now):
    _groups(now, members=100, exits=9)
    promotion = running_campaign([MemberFactory()])
    [alarm] = _check(check_group_exits, now)
    other = Alarm.objects.create(
        kind=AlarmKind.COMPLAINTS,
        raised_at=now,
        last_seen_at=now,
        actions=[{"action": "campaigns_paused", "campaigns": [promotion.pk]}],
    )

    alarm_resolve(alarm_id=alarm.pk, actor=supervisor)

    assert Campaign.objects.get(pk=promotion.pk).status == CampaignStatus.PAUSED
    assert Alarm.objects.get(pk=alarm.pk).actions[-1] == {
        "action": "campaigns_resumed",
        "campaigns": [],
        "at": Alarm.objects.get(pk=alarm.pk).actions[-1]["at"],
    }
    other.refresh_from_db()
    assert other.resolved_at is None


# A channel failing → fallback channel ----------------------------------------------------------------


def _sms_campaign(now, count=4):
    audience = [MemberFactory(email=f"s{i}@example.com") for i in range(count)]
    campaign = running_campaign(audience, channel="sms")
    deliveries_plan(campaign=campaign, now=now)
    return campaign


def test_a_failing_gateway_switches_its_channel_to_the_fallback_until_resolved(lead, supervisor, now):
    HealthSettings.objects.filter(pk=1).update(channel_min_attempts=4)
    ChannelConfig.objects.filter(channel="sms").update(fallback_channel="email")
    campaign = _sms_campaign(now)
    with Gateway(statuses=[500] * 4) as gateway:
        _configure("sms", gateway.url)
        deliveries_dispatch(now=now)
    assert Delivery.objects.filter(campaign=campaign).exclude(last_error="").count() == 4

    [alarm] = _check(check_channels, now + timedelta(minutes=1))

    assert (alarm.kind, alarm.subject) == (AlarmKind.CHANNEL_FAILING, "sms")
    assert alarm.actions[0] == {"action": "fallback_on", "channel": "sms", "fallback": "email"}
    assert alarm.measured["failure_rate"] == "100.00"
    config = ChannelConfig.objects.get(channel="sms")
    assert config.fallback_active and f"#{alarm.pk}" in config.fallback_reason
    assert _check(check_channels, now + timedelta(minutes=2)) == []

    alarm_resolve(alarm_id=alarm.pk, actor=supervisor)

    assert not ChannelConfig.objects.get(channel="sms").fallback_active
    assert Alarm.objects.get(pk=alarm.pk).actions[-1]["action"] == "fallback_off"


def test_a_working_gateway_or_too_few_attempts_switch_nothing(now):
    ChannelConfig.objects.filter(channel="sms").update(fallback_channel="email")
    _sms_campaign(now, count=3)
    with Gateway(statuses=[500, 500, 200]) as gateway:
        _configure("sms", gateway.url)
        deliveries_dispatch(now=now)

    HealthSettings.objects.filter(pk=1).update(channel_min_attempts=4)
    assert _check(check_channels, now) == []  # 3 attempts: too few to judge
    HealthSettings.objects.filter(pk=1).update(channel_min_attempts=3, channel_failure_percent=70)
    assert _check(check_channels, now) == []  # 2 of 3 failed: 66.67% < 70%
    assert not ChannelConfig.objects.get(channel="sms").fallback_active
    HealthSettings.objects.filter(pk=1).update(channel_failure_percent=60)
    assert len(_check(check_channels, now)) == 1


def test_without_a_fallback_channel_the_alarm_says_so(now):
    HealthSettings.objects.filter(pk=1).update(channel_min_attempts=2)
    _sms_campaign(now, count=2)
    with Gateway(statuses=[503, 503]) as gateway:
        _configure("sms", gateway.url)
        deliveries_dispatch(now=now)

    [alarm] = _check(check_channels, now)

    assert alarm.actions == [{"action": "no_fallback", "channel": "sms"}, {"action": "alert_skipped"}]
    assert "No fallback channel is set for SMS" in alarm.action_lines()[0]


# Acknowledging --------------------------------------------------------------------------------------


def test_acknowledging_records_who_and_when_once(supervisor, now):
    alarm = Alarm.objects.create(kind=AlarmKind.COMPLAINTS, raised_at=now, last_seen_at=now)

    alarm_acknowledge(alarm_id=alarm.pk, actor=supervisor, note="scripts updated")

    alarm.refresh_from_db()
    assert (alarm.acknowledged_by, alarm.note) == (supervisor, "scripts updated")
    assert alarm.acknowledged_at is not None and alarm.resolved_at is None
    with pytest.raises(ApplicationError):
        alarm_acknowledge(alarm_id=alarm.pk, actor=supervisor)


def test_one_broken_check_does_not_silence_the_others(member, now):
    for day in (13, 14, 15):
        _events(member, EventKind.GROUP_MESSAGE, at(day), 1)

    def broken(*, now, config):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        alarms_check(checks=[broken, check_quiet_groups], now=now)
    assert Alarm.objects.filter(kind=AlarmKind.QUIET_GROUPS).count() == 1
