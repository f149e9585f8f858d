"""Reward redemptions and coupon uses from real parallel connections (PostgreSQL)."""

from collections import Counter
from decimal import Decimal

import pytest
from django.utils import timezone

from loyalty.models import Coupon, CouponBatch, PointsAccount, Reward, RewardRedemption
from loyalty.services import coupon_redeem, coupons_issue, reward_redeem
from tests.factories import MemberFactory
from tests.factories.loyalty import EarnFactory
from tests.loyalty.ledger import assert_ledger_consistent
from tests.loyalty.test_concurrency import in_parallel, outcome

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_parallel_redemptions_by_many_members_never_oversell_the_stock():
    members = MemberFactory.create_batch(12)
    for member in members:
        EarnFactory(member=member, amount=100)
    bag = Reward.objects.create(name="限量帆布袋", points_price=60, stock=5)

    results = in_parallel(12, lambda i: reward_redeem(reward=bag, member=members[i], idempotency_key=f"r{i}"))

    assert Counter(map(outcome, results)) == {"RewardRedemption": 5, "ApplicationError": 7}
    assert Reward.objects.get(pk=bag.pk).stock == 0
    assert sorted(PointsAccount.objects.values_list("balance", flat=True)) == [40] * 5 + [100] * 7
    for member in members:
        assert_ledger_consistent(member.pk)


def test_parallel_redemptions_by_one_member_respect_the_limit_and_the_balance():
    member = MemberFactory()
    EarnFactory(member=member, amount=250)
    limited = Reward.objects.create(name="试用装", points_price=50, per_member_limit=3, stock=100)
    pricey = Reward.objects.create(name="保温杯", points_price=100, stock=100)

    def call(i: int):
        chosen = limited if i % 2 else pricey
        return reward_redeem(reward=chosen, member=member, idempotency_key=f"r{i}")

    results = in_parallel(10, call)

    taken_limited = RewardRedemption.objects.filter(reward=limited).count()
    taken_pricey = RewardRedemption.objects.filter(reward=pricey).count()
    assert taken_limited <= 3
    assert 50 * taken_limited + 100 * taken_pricey <= 250
    assert Counter(map(outcome, results))["RewardRedemption"] == taken_limited + taken_pricey
    assert Reward.objects.get(pk=limited.pk).stock == 100 - taken_limited
    assert Reward.objects.get(pk=pricey.pk).stock == 100 - taken_pricey
    assert PointsAccount.objects.get(member=member).balance == 250 - 50 * taken_limited - 100 * taken_pricey
    assert_ledger_consistent(member.pk)


def test_a_coupon_used_from_parallel_tills_is_used_once():
    member = MemberFactory()
    now = timezone.now()
    spring = CouponBatch.objects.create(
        name="减10", value=Decimal(10), valid_from=now, valid_until=now + timezone.timedelta(days=1)
    )
    coupons_issue(batch=spring, members=[member.pk], issue_key="k")
    code = Coupon.objects.get().code

    results = in_parallel(
        8, lambda i: coupon_redeem(code=code, member=member, order_amount=Decimal(50), order_ref=f"SO{i}")
    )

    assert Counter(map(outcome, results)) == {"CouponUse": 1, "ApplicationError": 7}
