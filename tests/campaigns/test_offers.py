"""Offers go through the loyalty services: points once per campaign, step and member; coupons
set-based once per campaign and step; a double-points window that follows the campaign."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail

from campaigns.models import CampaignKind, CampaignStatus, Delivery
from campaigns.offers import offers_grant
from campaigns.outbox import deliveries_dispatch, deliveries_plan
from campaigns.services import campaign_transition, campaigns_start_due
from loyalty.models import Coupon, CouponBatch, PointsAccount, PointsEntry, PointsMultiplierWindow
from tests.factories import MemberFactory
from tests.factories.campaigns import CampaignFactory, running_campaign

pytestmark = pytest.mark.django_db


@pytest.fixture
def batch(now):
    return CouponBatch.objects.create(
        name="满200减50",
        value=Decimal(50),
        min_spend=Decimal(200),
        valid_from=now,
        valid_until=now + timedelta(days=30),
    )


def test_members_reached_get_the_points_and_coupon_once(members, now, batch):
    opted_out = MemberFactory(email="x@example.com", email_opt_out=True)
    campaign = running_campaign(
        [*members, opted_out],
        offer_points=100,
        coupon_batch=batch,
        body="{{ member.name }}：{{ offer.points }}积分和{{ offer.coupon }}",
    )
    deliveries_plan(campaign=campaign, now=now)

    assert deliveries_dispatch(now=now).sent == 3

    assert mail.outbox[0].body.endswith("100积分和满200减50")
    balances = dict(PointsAccount.objects.values_list("member_id", "balance"))
    assert balances == {m.pk: 100 for m in members}  # not the member who opted out
    assert set(Coupon.objects.filter(batch=batch).values_list("member_id", flat=True)) == {m.pk for m in members}
    # Granting again (a redelivered task, a replay) gives nothing twice.
    assert offers_grant(deliveries=Delivery.objects.filter(campaign=campaign, status="sent"), now=now) == {
        "points": 3,
        "coupons": 0,
    }
    assert PointsEntry.objects.filter(member__in=members).count() == 3
    assert dict(PointsAccount.objects.values_list("member_id", "balance")) == balances


def test_an_expired_coupon_batch_does_not_stop_the_messages(members, now, batch):
    CouponBatch.objects.filter(pk=batch.pk).update(
        valid_from=now - timedelta(days=9), valid_until=now - timedelta(days=1)
    )
    campaign = running_campaign(members, coupon_batch=batch)
    deliveries_plan(campaign=campaign, now=now)

    assert deliveries_dispatch(now=now).sent == 3
    assert not Coupon.objects.exists()


def test_a_double_points_campaign_opens_a_window_only_while_it_runs(operator, supervisor, now):
    campaign = CampaignFactory(
        kind=CampaignKind.DOUBLE_POINTS, starts_at=now, ends_at=now + timedelta(days=3), offer_multiplier=Decimal(2)
    )
    campaign_transition(campaign=campaign, action="submit", actor=operator)
    campaign_transition(campaign=campaign, action="approve", actor=supervisor)
    assert not PointsMultiplierWindow.objects.exists()

    campaigns_start_due(now=now)
    campaign.refresh_from_db()
    window = campaign.multiplier_window
    assert (window.starts_at, window.ends_at, window.factor, window.is_active) == (
        campaign.starts_at,
        campaign.ends_at,
        Decimal(2),
        True,
    )
    campaign_transition(campaign=campaign, action="pause", actor=operator)
    window.refresh_from_db()
    assert not window.is_active
    campaign_transition(campaign=campaign, action="resume", actor=supervisor)
    window.refresh_from_db()
    assert window.is_active
    campaign_transition(campaign=campaign, action="cancel", actor=supervisor)
    window.refresh_from_db()
    assert not window.is_active
    assert campaign.status == CampaignStatus.CANCELLED


def test_a_double_points_campaign_needs_an_end(operator, now):
    from crm.core.exceptions import ApplicationError

    campaign = CampaignFactory(kind=CampaignKind.DOUBLE_POINTS, starts_at=now, offer_multiplier=Decimal(2))
    with pytest.raises(ApplicationError):
        campaign_transition(campaign=campaign, action="submit", actor=operator)
