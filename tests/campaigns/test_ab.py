"""A/B variants with a holdout control group: deterministic assignment, results with uplift."""

from datetime import timedelta

import pytest
from django.core import mail

from campaigns.channels import DELIVERY_HEADER
from campaigns.models import CampaignVariant, Delivery, DeliveryStatus, SkipReason
from campaigns.outbox import deliveries_dispatch, deliveries_plan
from campaigns.rules import BUCKETS, assignment_bucket, two_proportion_test, variant_ranges
from campaigns.selectors import campaign_results
from members.models import EventKind
from tests.factories import MemberEventFactory, MemberFactory
from tests.factories.campaigns import MessageTemplateFactory, running_campaign

pytestmark = pytest.mark.django_db


def test_ranges_split_the_buckets_by_weight_after_the_holdout():
    holdout, ranges = variant_ranges(holdout_percent=10, weights=[1, 3])

    assert holdout == 1000
    assert ranges == [(1000, 3250), (3250, BUCKETS)]


def test_the_bucket_spreads_consecutive_members_evenly():
    buckets = [assignment_bucket(campaign_id=7, member_id=m) for m in range(1, 20_001)]

    low_half = sum(b < BUCKETS // 2 for b in buckets)
    assert 9_500 < low_half < 10_500
    assert len({b % 10 for b in buckets}) == 10


def test_two_proportion_test_matches_the_textbook_value():
    z, p = two_proportion_test(60, 100, 40, 100)

    assert round(z, 3) == 2.828
    assert round(p, 4) == 0.0047
    assert two_proportion_test(0, 0, 1, 10) is None


def test_assignment_in_sql_is_the_documented_hash_and_the_holdout_gets_nothing(now):
    members = [MemberFactory(email=f"ab{i}@example.com") for i in range(120)]
    campaign = running_campaign(members, holdout_percent=20)
    a = CampaignVariant.objects.create(campaign=campaign, name="A", weight=1)
    b = CampaignVariant.objects.create(campaign=campaign, name="B", weight=1)

    plan = deliveries_plan(campaign=campaign, now=now)

    holdout_end, ranges = variant_ranges(holdout_percent=20, weights=[1, 1])
    for delivery in Delivery.objects.filter(campaign=campaign):
        bucket = assignment_bucket(campaign_id=campaign.pk, member_id=delivery.member_id)
        if bucket < holdout_end:
            assert (delivery.holdout, delivery.skip_reason) == (True, SkipReason.HOLDOUT)
        else:
            expected = a.pk if ranges[0][0] <= bucket < ranges[0][1] else b.pk
            assert (delivery.holdout, delivery.variant_id, delivery.status) == (False, expected, DeliveryStatus.QUEUED)
    assert 5 < plan.reasons[SkipReason.HOLDOUT] < 45


def test_each_variant_sends_its_own_message(members, now):
    campaign = running_campaign(members, body="shared {{ member.name }}")
    a = CampaignVariant.objects.create(campaign=campaign, name="A", weight=1)
    CampaignVariant.objects.create(campaign=campaign, name="B", weight=1)
    MessageTemplateFactory(campaign=campaign, variant=a, body="<p>only A</p>")
    deliveries_plan(campaign=campaign, now=now)

    deliveries_dispatch(now=now)

    bodies = {m.extra_headers[DELIVERY_HEADER]: m.alternatives[0][0] for m in mail.outbox}
    for delivery in Delivery.objects.filter(campaign=campaign):
        assert (bodies[str(delivery.pk)] == "<p>only A</p>") is (delivery.variant_id == a.pk)


def test_results_per_arm_with_uplift_against_the_control_group(now):
    members = [MemberFactory(email=f"r{i}@example.com") for i in range(40)]
    campaign = running_campaign(members, holdout_percent=50, conversion_days=7)
    deliveries_plan(campaign=campaign, now=now)
    deliveries_dispatch(now=now)
    treated = list(Delivery.objects.filter(campaign=campaign, holdout=False))
    control = list(Delivery.objects.filter(campaign=campaign, holdout=True))
    assert treated and control
    Delivery.objects.filter(pk=treated[0].pk).update(status=DeliveryStatus.OPENED)
    # Every treated member buys within the window; no control member does; one buys too late.
    for delivery in treated:
        MemberEventFactory(member_id=delivery.member_id, kind=EventKind.PURCHASE, occurred_at=now + timedelta(days=2))
    MemberEventFactory(member_id=control[0].member_id, kind=EventKind.PURCHASE, occurred_at=now + timedelta(days=8))

    arms = {arm.name: arm for arm in campaign_results(campaign=campaign)}

    assert arms["control"].assigned == len(control)
    assert (arms["control"].sent, arms["control"].converted) == (0, 0)
    arm = arms["-"]
    assert (arm.assigned, arm.sent, arm.opened, arm.converted) == (len(treated), len(treated), 1, len(treated))
    assert arm.uplift == 100.0
    assert 0 < arm.confidence < 1
