"""Planning a campaign's deliveries: set-based, every skip with its reason, caps across campaigns."""

from datetime import datetime, time, timedelta

import pytest

from campaigns.models import Delivery, DeliveryStatus, MessageCategory, OutboxSettings, SkipReason
from campaigns.outbox import deliveries_plan
from members.models import EventKind
from tests.factories import MemberEventFactory, MemberFactory
from tests.factories.campaigns import SHANGHAI, running_campaign

pytestmark = pytest.mark.django_db


def _outcome(campaign) -> dict:
    return {d.member_id: d.skip_reason or d.status for d in Delivery.objects.filter(campaign=campaign)}


def _group_event(member, kind, at):
    MemberEventFactory(member=member, kind=kind, amount=None, occurred_at=at)


def test_opt_outs_missing_addresses_and_members_who_left_are_skipped_with_their_reason(now):
    fine = MemberFactory(email="a@example.com")
    no_email = MemberFactory(email_opt_out=True, email="b@example.com")
    no_sms_only = MemberFactory(sms_opt_out=True, email="c@example.com")  # opted out of another channel
    no_address = MemberFactory(email="")
    left = MemberFactory(email="d@example.com")
    came_back = MemberFactory(email="e@example.com")
    _group_event(left, EventKind.GROUP_JOIN, now - timedelta(days=30))
    _group_event(left, EventKind.GROUP_EXIT, now - timedelta(days=3))
    _group_event(came_back, EventKind.GROUP_EXIT, now - timedelta(days=10))
    _group_event(came_back, EventKind.GROUP_JOIN, now - timedelta(days=2))
    campaign = running_campaign([fine, no_email, no_sms_only, no_address, left, came_back], channel="email")

    plan = deliveries_plan(campaign=campaign, now=now)

    assert _outcome(campaign) == {
        fine.pk: DeliveryStatus.QUEUED,
        no_email.pk: SkipReason.OPT_OUT,
        no_sms_only.pk: DeliveryStatus.QUEUED,
        no_address.pk: SkipReason.NO_ADDRESS,
        left.pk: SkipReason.LEFT_GROUP,
        came_back.pk: DeliveryStatus.QUEUED,
    }
    assert (plan.planned, plan.queued, plan.skipped) == (6, 3, 3)
    assert plan.reasons == {SkipReason.OPT_OUT: 1, SkipReason.NO_ADDRESS: 1, SkipReason.LEFT_GROUP: 1}


def test_planning_twice_adds_nothing(members, now):
    campaign = running_campaign(members)

    deliveries_plan(campaign=campaign, now=now)
    again = deliveries_plan(campaign=campaign, now=now)

    assert again.planned == 0
    assert Delivery.objects.filter(campaign=campaign).count() == 3


def test_one_promotional_message_a_day_across_all_channels(members, now):
    first = running_campaign(members, channel="email")
    second = running_campaign(members[:2], channel="wecom")
    deliveries_plan(campaign=first, now=now)

    plan = deliveries_plan(campaign=second, now=now + timedelta(hours=2))

    assert plan.reasons == {SkipReason.DAILY_CAP: 2}
    assert set(_outcome(second).values()) == {SkipReason.DAILY_CAP}


def test_the_daily_cap_is_a_local_calendar_day(members, now):
    first = running_campaign(members)
    deliveries_plan(campaign=first, now=now)
    tomorrow_morning = datetime(2026, 3, 17, 9, 0, tzinfo=SHANGHAI)

    plan = deliveries_plan(campaign=running_campaign(members), now=tomorrow_morning)

    assert plan.skipped == 0


def test_three_promotional_messages_a_week(members, now):
    for day in range(3):
        deliveries_plan(campaign=running_campaign(members), now=now + timedelta(days=day))

    fourth = deliveries_plan(campaign=running_campaign(members), now=now + timedelta(days=3))
    a_week_later = deliveries_plan(campaign=running_campaign(members), now=now + timedelta(days=7))

    assert fourth.reasons == {SkipReason.WEEKLY_CAP: 3}
    assert a_week_later.skipped == 0


def test_skipped_and_failed_messages_do_not_use_up_the_cap(members, now):
    first = running_campaign(members)
    deliveries_plan(campaign=first, now=now)
    Delivery.objects.filter(campaign=first, member=members[0]).update(status=DeliveryStatus.FAILED)

    plan = deliveries_plan(campaign=running_campaign(members), now=now)

    assert plan.reasons == {SkipReason.DAILY_CAP: 2}


def test_staff_can_raise_the_caps(members, now):
    OutboxSettings.objects.filter(pk=1).update(daily_cap=2)
    deliveries_plan(campaign=running_campaign(members), now=now)

    assert deliveries_plan(campaign=running_campaign(members), now=now).skipped == 0
    assert deliveries_plan(campaign=running_campaign(members), now=now).reasons == {SkipReason.DAILY_CAP: 3}


def test_transactional_messages_are_not_capped_but_are_recorded(members, now):
    deliveries_plan(campaign=running_campaign(members), now=now)
    notice = running_campaign(members, category=MessageCategory.TRANSACTIONAL)

    plan = deliveries_plan(campaign=notice, now=now)

    assert plan.skipped == 0
    assert Delivery.objects.filter(campaign=notice, category=MessageCategory.TRANSACTIONAL).count() == 3
    # …and they do not count against later promotional messages either.
    OutboxSettings.objects.filter(pk=1).update(daily_cap=2)
    assert deliveries_plan(campaign=running_campaign(members), now=now).skipped == 0


def test_quiet_hours_defer_promotional_messages_to_the_morning(members):
    late = datetime(2026, 3, 16, 22, 30, tzinfo=SHANGHAI)
    campaign = running_campaign(members)

    plan = deliveries_plan(campaign=campaign, now=late)

    assert plan.deferred and plan.queued == 3
    morning = datetime(2026, 3, 17, 8, 0, tzinfo=SHANGHAI)
    assert set(Delivery.objects.filter(campaign=campaign).values_list("next_attempt_at", "deferred")) == {
        (morning, True)
    }


def test_a_message_deferred_to_the_morning_counts_against_that_day(members):
    deliveries_plan(campaign=running_campaign(members), now=datetime(2026, 3, 16, 23, 0, tzinfo=SHANGHAI))

    plan = deliveries_plan(campaign=running_campaign(members), now=datetime(2026, 3, 17, 9, 0, tzinfo=SHANGHAI))

    assert plan.reasons == {SkipReason.DAILY_CAP: 3}


def test_transactional_messages_ignore_quiet_hours(members):
    late = datetime(2026, 3, 16, 23, 0, tzinfo=SHANGHAI)
    campaign = running_campaign(members, category=MessageCategory.TRANSACTIONAL)

    plan = deliveries_plan(campaign=campaign, now=late)

    assert not plan.deferred
    assert set(Delivery.objects.filter(campaign=campaign).values_list("next_attempt_at", flat=True)) == {late}


def test_the_send_time_of_day_is_local(members, now):
    campaign = running_campaign(members, send_time=time(18, 30))

    deliveries_plan(campaign=campaign, now=now)

    expected = datetime(2026, 3, 16, 18, 30, tzinfo=SHANGHAI)
    assert set(Delivery.objects.filter(campaign=campaign).values_list("scheduled_for", flat=True)) == {expected}
