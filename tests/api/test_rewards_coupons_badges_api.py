"""Rewards, coupons and badges through the API, all through loyalty.services."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from crm.models import Scope
from loyalty.models import Badge, Coupon, CouponBatch, Reward
from loyalty.selectors import points_balance
from loyalty.services import badge_award, coupons_issue
from tests.api.conftest import assert_error
from tests.factories import MemberFactory, UserFactory
from tests.factories.loyalty import EarnFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(db):
    member = MemberFactory(external_id="M1")
    EarnFactory(member=member, amount=1_000)
    return member


@pytest.fixture
def batch(db):
    return CouponBatch.objects.create(
        name="满 200 减 50",
        kind="amount",
        value=Decimal("50"),
        min_spend=Decimal("200"),
        valid_until=timezone.now() + timedelta(days=30),
    )


def test_the_catalog_lists_available_rewards_and_redeeming_spends_points_once(api, member):
    mug = Reward.objects.create(name="马克杯", points_price=300, stock=2)
    Reward.objects.create(name="Retired", points_price=1, is_active=False)

    catalog = api.get("/api/v1/rewards/").json()
    body = {"member_external_id": "M1", "reward_id": mug.pk, "reference": "r-1"}
    first = api.post("/api/v1/rewards/redeem/", body, format="json")
    again = api.post("/api/v1/rewards/redeem/", body, format="json")

    assert [reward["name"] for reward in catalog] == ["马克杯"]
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["points"] == -300 and first.json() == again.json()
    assert points_balance(member=member) == 700
    mug.refresh_from_db()
    assert mug.stock == 1


def test_a_reward_beyond_the_balance_is_422(api, member):
    castle = Reward.objects.create(name="Castle", points_price=5_000)

    body = assert_error(
        api.post(
            "/api/v1/rewards/redeem/",
            {"member_external_id": "M1", "reward_id": castle.pk, "reference": "x"},
            format="json",
        ),
        422,
        "rejected",
    )
    assert body["extra"]["balance"] == 1_000
    assert_error(
        api.post(
            "/api/v1/rewards/redeem/",
            {"member_external_id": "M1", "reward_id": 999_999, "reference": "y"},
            format="json",
        ),
        404,
        "not_found",
    )


def test_coupons_are_issued_once_validated_without_use_and_redeemed(api, member, batch):
    MemberFactory(external_id="M2")
    issue = {"batch_id": batch.pk, "member_external_ids": ["M1", "M2", "nobody"], "issue_key": "may-promo"}

    first = api.post("/api/v1/coupons/issue/", issue, format="json").json()
    again = api.post("/api/v1/coupons/issue/", issue, format="json").json()
    code = Coupon.objects.get(member=member).code
    order = {"code": code, "member_external_id": "M1", "order_amount": "260.00"}
    small = api.post("/api/v1/coupons/validate/", {**order, "order_amount": "100.00"}, format="json").json()
    valid = api.post("/api/v1/coupons/validate/", order, format="json").json()
    used = api.post("/api/v1/coupons/redeem/", {**order, "order_ref": "o-1"}, format="json")
    retry = api.post("/api/v1/coupons/redeem/", {**order, "order_ref": "o-1"}, format="json")
    other_order = api.post("/api/v1/coupons/redeem/", {**order, "order_ref": "o-2"}, format="json")

    assert (first["issued"], first["unknown_members"], again["issued"]) == (2, ["nobody"], 0)
    assert small["valid"] is False and small["reason"]
    assert valid == {"valid": True, "discount": "50.00", "reason": None}
    assert used.status_code == 200 and used.json()["discount"] == "50.00"
    assert retry.json() == used.json()
    assert_error(other_order, 422, "rejected")
    after_use = api.post("/api/v1/coupons/validate/", order, format="json").json()
    assert after_use["valid"] is False


def test_someone_elses_coupon_is_not_confirmed_to_exist(api, member, batch):
    other = MemberFactory(external_id="M2")
    coupons_issue(batch=batch, members=[other.pk], issue_key="k")
    code = Coupon.objects.get().code

    body = api.post(
        "/api/v1/coupons/validate/", {"code": code, "member_external_id": "M1", "order_amount": "300"}, format="json"
    ).json()

    assert body["valid"] is False
    assert Coupon.objects.get().status == "issued"


def test_coupon_endpoints_need_the_coupons_scope(make_client, member, batch):
    client = make_client(scopes=[Scope.POINTS_WRITE, Scope.MEMBERS_READ])
    for path in ("issue", "validate", "redeem"):
        assert_error(client.post(f"/api/v1/coupons/{path}/", {}, format="json"), 403, "permission_denied")


def test_badges_are_listed_and_a_members_badges_shown_in_the_read(api, member):
    star = Badge.objects.create(code="active-star-test", name="活跃之星", kind="title")
    badge_award(member=member, badge=star, actor=UserFactory(username="boss", is_superuser=True), reason="test")

    catalog = api.get("/api/v1/badges/").json()
    held = api.get("/api/v1/members/M1/").json()["badges"]

    assert "active-star-test" in [badge["code"] for badge in catalog]
    assert [(badge["code"], badge["name"], badge["kind"]) for badge in held] == [
        ("active-star-test", "活跃之星", "title")
    ]


def test_lapsed_and_revoked_badges_are_not_shown(api, member):
    from loyalty.models import MemberBadge

    now = timezone.now()
    kept = Badge.objects.create(code="kept", name="Kept")
    lapsed = Badge.objects.create(code="lapsed", name="Lapsed", kind="title")
    revoked = Badge.objects.create(code="revoked", name="Revoked")
    MemberBadge.objects.create(
        member=member, badge=kept, awarded_at=now - timedelta(days=3), expires_at=now + timedelta(days=3)
    )
    MemberBadge.objects.create(member=member, badge=lapsed, expires_at=now - timedelta(seconds=1))
    MemberBadge.objects.create(member=member, badge=revoked, revoked_at=now)

    held = api.get("/api/v1/members/M1/").json()["badges"]

    assert [badge["code"] for badge in held] == ["kept"]
    assert held[0]["expires_at"] is not None
