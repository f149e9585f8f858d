"""Journeys run by themselves: each occasion is planned once however often the job runs, the gift
goes through loyalty, and the step's own message is sent."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core import mail

from campaigns.journeys import journeys_run
from campaigns.models import CampaignKind, CampaignStatus, Delivery, JourneyStep, Referral
from campaigns.outbox import deliveries_dispatch
from loyalty.models import Badge, Coupon, CouponBatch, MemberBadge, MemberTier, PointsAccount, Tier
from members.models import EventKind, InteractionKind
from tests.factories import MemberEventFactory, MemberFactory
from tests.factories.campaigns import CampaignFactory, MessageTemplateFactory

pytestmark = pytest.mark.django_db


def journey(kind, now, steps, **kwargs):
    campaign = CampaignFactory(kind=kind, status=CampaignStatus.RUNNING, starts_at=now - timedelta(days=30), **kwargs)
    for key, value, extra in steps:
        JourneyStep.objects.create(campaign=campaign, key=key, value=value, **extra)
        MessageTemplateFactory(campaign=campaign, step=key, body=f"{key}：{{{{ member.name }}}}")
    return campaign


def balances():
    return dict(PointsAccount.objects.values_list("member_id", "balance"))


def planned(campaign):
    return set(Delivery.objects.filter(campaign=campaign).values_list("step", "member_id"))


def test_welcome_steps_follow_the_join_date_once_each_with_the_gift(now):
    campaign = journey(CampaignKind.WELCOME, now, [("day0", 0, {"offer_points": 50}), ("day3", 3, {}), ("day7", 7, {})])
    new = MemberFactory(email="new@example.com", joined_at=now - timedelta(hours=1))
    three_days = MemberFactory(email="three@example.com", joined_at=now - timedelta(days=3))
    MemberFactory(email="old@example.com", joined_at=now - timedelta(days=60))  # before the journey began

    journeys_run(now=now)
    again = journeys_run(now=now + timedelta(minutes=15))

    assert planned(campaign) == {("day0", new.pk), ("day3", three_days.pk)}
    assert again.total == 0
    assert balances() == {new.pk: 50}
    assert deliveries_dispatch(now=now).sent == 2
    assert sorted(m.body for m in mail.outbox) == sorted([f"day0：{new.name}", f"day3：{three_days.name}"])


def test_birthday_gift_follows_the_tier(now):
    gold = Tier.objects.get(code="gold")
    campaign = journey(
        CampaignKind.BIRTHDAY,
        now,
        [("gold", 0, {"tier": gold, "offer_points": 500}), ("everyone", 0, {"offer_points": 100})],
    )
    today = now.date()
    gold_member = MemberFactory(birthday=date(1990, today.month, today.day))
    MemberTier.objects.create(member=gold_member, tier=gold, since=now)
    plain = MemberFactory(birthday=date(1995, today.month, today.day))
    MemberFactory(birthday=date(1995, today.month, today.day) + timedelta(days=1))

    journeys_run(now=now)
    journeys_run(now=now + timedelta(hours=1))

    assert planned(campaign) == {(f"birthday:{today.year}", gold_member.pk), (f"birthday:{today.year}", plain.pk)}
    assert balances() == {gold_member.pk: 500, plain.pk: 100}


def test_check_in_streaks_are_rewarded_once_when_reached_with_points_and_the_badge(now):
    badge = Badge.objects.get(code="check-in-7")
    campaign = journey(CampaignKind.CHECK_IN, now, [("streak7", 7, {"offer_points": 70, "badge": badge})])
    seven, eight, six = MemberFactory(), MemberFactory(), MemberFactory()
    for member, days in ((seven, 7), (eight, 8), (six, 6)):
        for ago in range(days):
            MemberEventFactory(
                member=member, kind=EventKind.CHECK_IN, amount=None, occurred_at=now - timedelta(days=ago)
            )

    journeys_run(now=now)
    journeys_run(now=now + timedelta(minutes=15))

    assert planned(campaign) == {(f"streak7:{now.date().isoformat()}", seven.pk)}
    assert balances() == {seven.pk: 70}
    assert MemberBadge.objects.filter(member=seven, badge=badge).exists()


def test_referral_rewards_both_once_and_a_device_or_invitee_cannot_farm_it(now):
    batch = CouponBatch.objects.create(
        name="邀请券", value=Decimal(5), valid_from=now - timedelta(days=1), valid_until=now + timedelta(days=30)
    )
    campaign = journey(CampaignKind.REFERRAL, now, [("joined", 0, {"coupon_batch": batch})])
    inviter, invitee = MemberFactory(), MemberFactory()
    second_account, second_invitee = MemberFactory(), MemberFactory()
    for who, whom, device in (
        (inviter, invitee, "dev-1"),
        (second_account, second_invitee, "dev-1"),  # the same phone handset again
        (second_account, invitee, "dev-2"),  # the same friend invited again
        (inviter, None, "dev-3"),  # a friend who has not joined
    ):
        payload = {"invitee": whom.external_id if whom else "M-NOT-YET", "device": device}
        MemberEventFactory(
            member=who, kind=EventKind.INVITE, amount=None, occurred_at=now - timedelta(hours=2), payload=payload
        )

    journeys_run(now=now)
    journeys_run(now=now + timedelta(minutes=15))

    assert list(Referral.objects.values_list("inviter", "invitee")) == [(inviter.pk, invitee.pk)]
    assert sorted(Coupon.objects.filter(batch=batch).values_list("member_id", flat=True)) == sorted(
        [inviter.pk, invitee.pk]
    )
    assert {m for _, m in planned(campaign)} == {inviter.pk, invitee.pk}


def test_a_long_view_without_an_order_brings_a_coupon_message(now):
    campaign = journey(CampaignKind.BROWSE, now, [("viewed", 90, {"offer_points": 5})])
    hesitant, bought, glanced, just_now = MemberFactory(), MemberFactory(), MemberFactory(), MemberFactory()
    for member, seconds, ago in ((hesitant, 120, 60), (bought, 120, 60), (glanced, 30, 60), (just_now, 300, 5)):
        MemberEventFactory(
            member=member,
            kind=EventKind.INTERACTION,
            sub_kind=InteractionKind.VIEW,
            amount=None,
            occurred_at=now - timedelta(minutes=ago),
            payload={"seconds": seconds, "product": "P1"},
        )
    MemberEventFactory(member=bought, kind=EventKind.PURCHASE, occurred_at=now - timedelta(minutes=40))

    journeys_run(now=now)

    assert planned(campaign) == {(f"viewed:{now.date().isoformat()}", hesitant.pk)}


def test_a_journey_that_is_not_running_plans_nothing(now):
    campaign = journey(
        CampaignKind.WELCOME,
        now,
        [("day0", 0, {})],
    )
    campaign.status = CampaignStatus.PAUSED
    campaign.save(update_fields=["status"])
    MemberFactory(joined_at=now - timedelta(hours=1))

    assert journeys_run(now=now).total == 0


def test_a_paused_journey_is_retimed_and_goes_live_when_resumed(now, operator, supervisor):
    from campaigns.services import campaign_save, campaign_transition
    from crm.core.exceptions import ApplicationError

    campaign = journey(CampaignKind.WELCOME, now, [("day3", 3, {})])
    with pytest.raises(ApplicationError):  # running: not edited under members' feet
        campaign_save(campaign=campaign, actor=operator)
    campaign_transition(campaign=campaign, action="pause", actor=operator)
    campaign.send_time = now.time().replace(hour=19)
    campaign_save(campaign=campaign, actor=operator)
    JourneyStep.objects.filter(campaign=campaign, key="day3").update(value=2)
    campaign_transition(campaign=campaign, action="resume", actor=supervisor)
    member = MemberFactory(joined_at=now - timedelta(days=2))

    journeys_run(now=now)

    assert planned(campaign) == {("day3", member.pk)}
    assert Delivery.objects.get(campaign=campaign).scheduled_for.astimezone(now.tzinfo).hour == 19
