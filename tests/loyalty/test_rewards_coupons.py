from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from crm.core.exceptions import ApplicationError
from loyalty.models import (
    Coupon,
    CouponBatch,
    CouponKind,
    CouponStatus,
    EntryKind,
    PointsAccount,
    PointsEntry,
    Reward,
    RewardRedemption,
    Tier,
)
from loyalty.services import (
    coupon_redeem,
    coupons_expire_due,
    coupons_issue,
    coupons_issue_by_member_numbers,
    reward_redeem,
    tier_assign,
)
from loyalty.services.rewards import CODE_ALPHABET, CODE_LENGTH
from members.models import Member
from tests.factories import MemberFactory
from tests.factories.loyalty import EarnFactory
from tests.loyalty.ledger import assert_ledger_consistent

pytestmark = pytest.mark.django_db


def reward(**fields) -> Reward:
    return Reward.objects.create(**{"name": "帆布袋", "points_price": 100, **fields})


def batch(**fields) -> CouponBatch:
    now = timezone.now()
    values = {
        "name": "满200减50",
        "kind": CouponKind.AMOUNT,
        "value": Decimal("50"),
        "min_spend": Decimal("200"),
        "valid_from": now - timedelta(days=1),
        "valid_until": now + timedelta(days=30),
    }
    return CouponBatch.objects.create(**{**values, **fields})


def balance(member) -> int:
    return PointsAccount.objects.get(member=member).balance


# Rewards -----------------------------------------------------------------------------------


def test_redeeming_a_reward_spends_its_points_and_one_of_its_stock(member):
    EarnFactory(member=member, amount=250)
    bag = reward(stock=3)

    redemption = reward_redeem(reward=bag, member=member, idempotency_key="r1")

    assert redemption.points_entry.amount == -100
    assert redemption.points_entry.kind == EntryKind.REDEEM
    assert balance(member) == 150
    bag.refresh_from_db()
    assert bag.stock == 2
    assert_ledger_consistent(member.pk)


def test_a_retry_with_the_same_key_returns_the_first_redemption(member):
    EarnFactory(member=member, amount=250)
    bag = reward(stock=3)

    first = reward_redeem(reward=bag, member=member, idempotency_key="r1")
    again = reward_redeem(reward=bag, member=member, idempotency_key="r1")

    assert first.pk == again.pk
    assert balance(member) == 150
    assert Reward.objects.get(pk=bag.pk).stock == 2


def test_a_short_balance_refuses_and_gives_the_stock_back(member):
    EarnFactory(member=member, amount=99)
    bag = reward(stock=1)

    with pytest.raises(ApplicationError, match="Not enough points"):
        reward_redeem(reward=bag, member=member, idempotency_key="r1")

    assert Reward.objects.get(pk=bag.pk).stock == 1
    assert not RewardRedemption.objects.exists()
    assert balance(member) == 99


def test_out_of_stock_refuses_without_spending_points(member):
    EarnFactory(member=member, amount=500)
    bag = reward(stock=0)

    with pytest.raises(ApplicationError, match="out of stock"):
        reward_redeem(reward=bag, member=member, idempotency_key="r1")

    assert balance(member) == 500


def test_the_per_member_limit_holds(member):
    EarnFactory(member=member, amount=500)
    bag = reward(per_member_limit=2)
    reward_redeem(reward=bag, member=member, idempotency_key="r1")
    reward_redeem(reward=bag, member=member, idempotency_key="r2")

    with pytest.raises(ApplicationError, match="2 times"):
        reward_redeem(reward=bag, member=member, idempotency_key="r3")

    assert balance(member) == 300
    # Another member is not limited by this one's redemptions.
    other = MemberFactory()
    EarnFactory(member=other, amount=100)
    reward_redeem(reward=bag, member=other, idempotency_key="o1")


def test_a_tier_restricted_reward_needs_that_tier_or_higher(member):
    EarnFactory(member=member, amount=500)
    vip = reward(min_tier=Tier.objects.get(code="gold"))

    with pytest.raises(ApplicationError, match="黄金"):
        reward_redeem(reward=vip, member=member, idempotency_key="r1")

    tier_assign(member=member, tier=Tier.objects.get(code="diamond"), reason="test")
    reward_redeem(reward=vip, member=member, idempotency_key="r2")
    assert balance(member) == 400


@pytest.mark.parametrize(
    "fields",
    [
        {"is_active": False},
        {"valid_until": timezone.now() - timedelta(days=1)},
        {"valid_from": timezone.now() + timedelta(days=1)},
    ],
)
def test_a_reward_outside_its_validity_cannot_be_redeemed(member, fields):
    EarnFactory(member=member, amount=500)

    with pytest.raises(ApplicationError, match="not available"):
        reward_redeem(reward=reward(**fields), member=member, idempotency_key="r1")


# Coupons -----------------------------------------------------------------------------------


def test_coupons_are_issued_once_per_member_with_unique_secure_codes():
    members = MemberFactory.create_batch(5)
    spring = batch()

    assert coupons_issue(batch=spring, members=Member.objects.all(), issue_key="k1") == 5
    assert coupons_issue(batch=spring, members=[m.pk for m in members], issue_key="k1") == 0

    codes = list(Coupon.objects.values_list("code", flat=True))
    assert len(set(codes)) == 5
    assert all(len(code) == CODE_LENGTH and set(code) <= set(CODE_ALPHABET) for code in codes)
    assert set(Coupon.objects.values_list("status", flat=True)) == {CouponStatus.ISSUED}
    assert Coupon.objects.first().expires_at == spring.valid_until
    # A new issuance (another key) gives each member another coupon.
    assert coupons_issue(batch=spring, members=[members[0].pk], issue_key="k2") == 1


def test_coupons_are_issued_by_member_numbers_and_unknown_numbers_are_reported():
    member = MemberFactory(external_id="M1")

    issued, unknown = coupons_issue_by_member_numbers(
        batch=batch(), member_numbers=["M1", " M1 ", "M404", ""], issue_key="form-1"
    )

    assert (issued, unknown) == (1, ["M404"])
    assert Coupon.objects.get().member == member


def test_an_expired_batch_issues_nothing(member):
    old = batch(valid_from=timezone.now() - timedelta(days=10), valid_until=timezone.now() - timedelta(days=1))

    with pytest.raises(ApplicationError, match="expired"):
        coupons_issue(batch=old, members=[member.pk], issue_key="k")


def issued_coupon(member, **batch_fields) -> Coupon:
    coupons_issue(batch=batch(**batch_fields), members=[member.pk], issue_key="k")
    return Coupon.objects.filter(member=member).latest("id")


def test_redeeming_a_coupon_marks_it_used_and_returns_the_discount(member):
    coupon = issued_coupon(member)

    use = coupon_redeem(code=coupon.code.lower(), member=member, order_amount=Decimal("260"), order_ref="SO1")

    assert use.discount == Decimal("50.00")
    coupon.refresh_from_db()
    assert (coupon.status, coupon.order_ref) == (CouponStatus.USED, "SO1")
    assert coupon.used_at is not None
    # The till retrying the same order gets the same answer; another order is refused.
    assert coupon_redeem(code=coupon.code, member=member, order_amount=Decimal("260"), order_ref="SO1").discount == 50
    with pytest.raises(ApplicationError, match="already been used"):
        coupon_redeem(code=coupon.code, member=member, order_amount=Decimal("260"), order_ref="SO2")


def test_a_percent_coupon_takes_its_share_of_the_order(member):
    coupon = issued_coupon(member, kind=CouponKind.PERCENT, value=Decimal("15"), min_spend=Decimal("0"))

    assert coupon_redeem(code=coupon.code, member=member, order_amount=Decimal("99.90")).discount == Decimal("14.99")


def test_a_coupon_below_its_minimum_spend_is_refused(member):
    coupon = issued_coupon(member)

    with pytest.raises(ApplicationError, match="at least 200"):
        coupon_redeem(code=coupon.code, member=member, order_amount=Decimal("199.99"))

    assert Coupon.objects.get(pk=coupon.pk).status == CouponStatus.ISSUED


def test_another_members_coupon_is_refused_as_if_unknown(member):
    coupon = issued_coupon(member)

    with pytest.raises(ApplicationError, match="No such coupon"):
        coupon_redeem(code=coupon.code, member=MemberFactory(), order_amount=Decimal("500"))
    with pytest.raises(ApplicationError, match="No such coupon"):
        coupon_redeem(code="NOPE", member=member, order_amount=Decimal("500"))


def test_an_expired_coupon_is_refused_and_the_nightly_job_marks_it(member):
    coupon = issued_coupon(member)
    later = coupon.expires_at + timedelta(seconds=1)

    with pytest.raises(ApplicationError, match="expired"):
        coupon_redeem(code=coupon.code, member=member, order_amount=Decimal("500"), now=later)

    assert coupons_expire_due(now=later) == 1
    assert coupons_expire_due(now=later) == 0
    assert Coupon.objects.get(pk=coupon.pk).status == CouponStatus.EXPIRED


def test_the_expire_coupons_task_calls_the_service(member):
    from loyalty.tasks import expire_coupons

    issued_coupon(member)

    assert expire_coupons.apply().get() == 0
    assert PointsEntry.objects.count() == 0


# Admin -------------------------------------------------------------------------------------


def test_a_supervisor_issues_a_batch_by_member_numbers_from_the_admin(client, supervisor):
    MemberFactory(external_id="M1")
    MemberFactory(external_id="M2")
    spring = batch()
    client.force_login(supervisor)
    url = f"/admin/loyalty/couponbatch/{spring.pk}/issue/"
    assert client.get(url).status_code == 200
    form = {"token": "a" * 32, "member_numbers": "M1\nM2, M9"}

    response = client.post(url, form, follow=True)
    client.post(url, form)  # a double submit issues nothing more

    assert response.status_code == 200
    assert Coupon.objects.filter(batch=spring).count() == 2
    text = response.content.decode()
    assert "2 coupons issued." in text and "M9" in text
    assert client.get(f"/admin/loyalty/couponbatch/{spring.pk}/change/").status_code == 200
    assert client.get("/admin/loyalty/coupon/?q=M1").status_code == 200


def test_operators_cannot_issue_coupons(client, operator):
    client.force_login(operator)

    assert client.get(f"/admin/loyalty/couponbatch/{batch().pk}/issue/").status_code == 403


def test_rewards_and_redemptions_show_in_the_admin(client, supervisor, member):
    EarnFactory(member=member, amount=100)
    reward_redeem(reward=reward(), member=member, idempotency_key="r")
    client.force_login(supervisor)

    for url in ("/admin/loyalty/reward/", "/admin/loyalty/rewardredemption/", "/admin/loyalty/reward/add/"):
        assert client.get(url).status_code == 200, url
