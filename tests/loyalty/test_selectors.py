from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from loyalty.models import LoyaltySettings
from loyalty.selectors import (
    members_with_points_expiring,
    points_balance,
    points_flow,
    points_liability,
    points_open_lots,
)
from loyalty.services import points_expire_due, points_reverse
from tests.factories import MemberFactory
from tests.factories.loyalty import EarnFactory, RedeemFactory

pytestmark = pytest.mark.django_db


def test_balance_of_a_member_without_points_is_zero(member, now):
    assert points_balance(member=member) == 0
    EarnFactory(member=member, amount=30, now=now)
    assert points_balance(member=member) == 30


def test_open_lots_show_what_expires_when_in_spending_order(member, now):
    later = EarnFactory(member=member, amount=100, now=now)
    spent = EarnFactory(member=member, amount=10, now=now, expires_at=now + timedelta(days=3))
    sooner = EarnFactory(member=member, amount=20, now=now, expires_at=now + timedelta(days=5))
    RedeemFactory(member=member, amount=10, now=now)

    assert [(lot.pk, lot.remaining) for lot in points_open_lots(member=member)] == [(sooner.pk, 20), (later.pk, 100)]
    assert spent.pk not in {lot.pk for lot in points_open_lots(member=member)}


def test_members_with_points_expiring_within_n_days(now):
    soon, later, spent, already_due = (MemberFactory() for _ in range(4))
    EarnFactory(member=soon, amount=10, now=now, expires_at=now + timedelta(days=3))
    EarnFactory(member=soon, amount=15, now=now, expires_at=now + timedelta(days=30))
    EarnFactory(member=soon, amount=99, now=now, expires_at=now + timedelta(days=31))
    EarnFactory(member=later, amount=10, now=now, expires_at=now + timedelta(days=31))
    EarnFactory(member=spent, amount=10, now=now, expires_at=now + timedelta(days=3))
    RedeemFactory(member=spent, amount=10, now=now)
    EarnFactory(member=already_due, amount=10, now=now - timedelta(days=9), expires_at=now)

    expiring = members_with_points_expiring(days=30, now=now)

    assert [(m.pk, m.expiring_points, m.first_expiry) for m in expiring] == [(soon.pk, 25, now + timedelta(days=3))]


def test_liability_values_outstanding_points_at_the_current_rate(now):
    EarnFactory(member=MemberFactory(), amount=1_000, now=now)
    EarnFactory(member=MemberFactory(), amount=275, now=now)

    assert points_liability().points == 1_275
    assert points_liability().yuan == Decimal("25.50")  # 50 points = 1 yuan by default
    config = LoyaltySettings.load()
    config.points_per_yuan = 100
    config.save()
    assert points_liability().yuan == Decimal("12.75")


def test_redemption_rate_is_net_of_reversals_and_the_counters_agree_with_the_ledger(member, now):
    earn = EarnFactory(member=member, amount=200, now=now)
    EarnFactory(member=member, amount=200, now=now, expires_at=now + timedelta(days=1))
    redemption = RedeemFactory(member=member, amount=100, now=now)
    RedeemFactory(member=member, amount=50, now=now)
    points_reverse(entry=redemption, reason="order cancelled", idempotency_key="cancel", now=now)
    points_expire_due(now=now + timedelta(days=2))
    points_reverse(entry=earn, reason="refund", idempotency_key="refund", now=now + timedelta(days=2))

    # Both redemptions came from the short-lived lot; the cancelled one went back into it and
    # expired with it (150). Earned 400 less the refunded 200; redeemed 150 less the cancelled 100.
    flow = points_flow()
    assert (flow.earned, flow.redeemed, flow.expired) == (200, 50, 150)
    assert flow.redemption_rate == Decimal("0.25")
    assert points_flow(start=timezone.now() - timedelta(days=1)) == flow


def test_redemption_rate_over_a_period_counts_only_that_period(member, now):
    EarnFactory(member=member, amount=100, now=now)
    RedeemFactory(member=member, amount=58, now=now)
    recorded = timezone.now()

    assert points_flow(end=recorded - timedelta(hours=1)).redemption_rate is None
    assert points_flow(start=recorded - timedelta(hours=1), end=recorded + timedelta(hours=1)).redemption_rate == (
        Decimal("0.58")
    )
