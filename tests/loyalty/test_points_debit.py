from datetime import timedelta

import pytest

from crm.core.exceptions import ApplicationError
from loyalty.models import EntryKind, LoyaltySettings, PointsAccount, PointsAllocation, PointsEntry
from loyalty.services import points_debit
from tests.factories import MemberFactory
from tests.factories.loyalty import EarnFactory
from tests.loyalty.ledger import assert_ledger_consistent

pytestmark = pytest.mark.django_db


def remaining(*lots) -> list[int]:
    return [PointsEntry.objects.get(pk=lot.pk).remaining for lot in lots]


def test_redeem_spends_the_oldest_lots_first(member, now):
    first = EarnFactory(member=member, amount=100, now=now - timedelta(days=60))
    second = EarnFactory(member=member, amount=100, now=now - timedelta(days=30))
    third = EarnFactory(member=member, amount=100, now=now)

    entry = points_debit(member=member, amount=150, reason="coupon", idempotency_key="r1", now=now)

    assert (entry.kind, entry.amount) == (EntryKind.REDEEM, -150)
    assert remaining(first, second, third) == [0, 50, 100]
    assert list(PointsAllocation.objects.filter(entry=entry).order_by("lot_id").values_list("lot_id", "amount")) == [
        (first.pk, 100),
        (second.pk, 50),
    ]
    account = PointsAccount.objects.get(member=member)
    assert (account.balance, account.lifetime_redeemed) == (150, 150)
    assert_ledger_consistent(member.pk)


def test_points_that_expire_sooner_are_spent_first_whatever_their_age(member, now):
    yearly = EarnFactory(member=member, amount=100, now=now - timedelta(days=30))
    promo = EarnFactory(member=member, amount=100, now=now, expires_at=now + timedelta(days=7))
    forever = EarnFactory(member=member, amount=100, now=now - timedelta(days=90))
    PointsEntry.objects.filter(pk=forever.pk).update(expires_at=None)

    points_debit(member=member, amount=150, reason="coupon", idempotency_key="r1", now=now)
    points_debit(member=member, amount=100, reason="coupon", idempotency_key="r2", now=now)

    assert remaining(promo, yearly, forever) == [0, 0, 50]


def test_a_short_balance_is_refused_and_changes_nothing(member, now):
    lot = EarnFactory(member=member, amount=100, now=now)

    with pytest.raises(ApplicationError) as refused:
        points_debit(member=member, amount=101, reason="coupon", idempotency_key="r1", now=now)

    assert refused.value.extra == {"balance": 100, "amount": 101}
    assert remaining(lot) == [100]
    assert PointsAccount.objects.get(member=member).balance == 100
    assert not PointsEntry.objects.filter(idempotency_key="r1").exists()


def test_a_member_without_points_cannot_redeem(now):
    with pytest.raises(ApplicationError):
        points_debit(member=MemberFactory(), amount=1, reason="coupon", idempotency_key="r1", now=now)


def test_points_past_their_expiry_are_expired_before_spending(member, now):
    EarnFactory(member=member, amount=100, now=now - timedelta(days=10), expires_at=now - timedelta(hours=1))
    EarnFactory(member=member, amount=30, now=now)

    with pytest.raises(ApplicationError):
        points_debit(member=member, amount=50, reason="coupon", idempotency_key="r1", now=now)

    # The refusal rolled everything back, the expiry included; a valid debit keeps it.
    assert PointsAccount.objects.get(member=member).balance == 130
    points_debit(member=member, amount=30, reason="coupon", idempotency_key="r2", now=now)
    account = PointsAccount.objects.get(member=member)
    assert (account.balance, account.lifetime_expired) == (0, 100)
    assert_ledger_consistent(member.pk)


def test_redemption_minimum_is_a_setting(member, now):
    EarnFactory(member=member, amount=2000, now=now)
    points_debit(member=member, amount=1, reason="default: no minimum", idempotency_key="r1", now=now)
    config = LoyaltySettings.load()
    config.redemption_minimum = 1000
    config.save()

    with pytest.raises(ApplicationError):
        points_debit(member=member, amount=999, reason="coupon", idempotency_key="r2", now=now)
    points_debit(member=member, amount=1000, reason="coupon", idempotency_key="r3", now=now)
    assert PointsAccount.objects.get(member=member).balance == 999


def test_a_repeated_redemption_is_applied_once(member, now):
    EarnFactory(member=member, amount=100, now=now)
    first = points_debit(member=member, amount=60, reason="coupon", idempotency_key="r1", now=now)

    # Even though a second 60 would no longer fit the balance, the replay returns the first.
    again = points_debit(member=member, amount=60, reason="coupon", idempotency_key="r1", now=now)

    assert again.pk == first.pk
    assert PointsAccount.objects.get(member=member).balance == 40
    assert_ledger_consistent(member.pk)


def test_a_debit_key_already_used_by_a_credit_is_refused(member, now):
    EarnFactory(member=member, amount=100, now=now, idempotency_key="k")

    with pytest.raises(ApplicationError):
        points_debit(member=member, amount=10, reason="coupon", idempotency_key="k", now=now)
