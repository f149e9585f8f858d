from datetime import timedelta

import pytest

from crm.core.exceptions import ApplicationError
from loyalty.models import EntryKind, PointsAccount, PointsEntry
from loyalty.services import points_expire_due, points_reverse
from tests.factories import UserFactory
from tests.factories.loyalty import EarnFactory, RedeemFactory
from tests.loyalty.ledger import assert_ledger_consistent

pytestmark = pytest.mark.django_db


def account(member) -> PointsAccount:
    return PointsAccount.objects.get(member=member)


def remaining(lot) -> int:
    return PointsEntry.objects.get(pk=lot.pk).remaining


def reverse(entry, now, key="rev"):
    return points_reverse(entry=entry, reason="refund", idempotency_key=key, now=now)


def test_reversing_an_unspent_earn_removes_its_lot(member, now):
    lot = EarnFactory(member=member, amount=100, now=now)
    EarnFactory(member=member, amount=40, now=now)

    reversal = reverse(lot, now)

    assert (reversal.kind, reversal.amount, reversal.reverses_id) == (EntryKind.REVERSE, -100, lot.pk)
    assert remaining(lot) == 0
    assert (account(member).balance, account(member).lifetime_earned) == (40, 40)
    assert_ledger_consistent(member.pk)


def test_reversing_a_spent_earn_takes_the_spent_part_from_other_lots(member, now):
    refunded = EarnFactory(member=member, amount=100, now=now - timedelta(days=1))
    other = EarnFactory(member=member, amount=100, now=now)
    RedeemFactory(member=member, amount=70, now=now)  # all from the older, refunded lot

    reversal = reverse(refunded, now)

    assert reversal.amount == -100
    assert (remaining(refunded), remaining(other)) == (0, 30)
    assert account(member).balance == 30
    assert_ledger_consistent(member.pk)


def test_what_cannot_be_taken_back_is_written_off_and_the_balance_stays_at_zero(member, now):
    refunded = EarnFactory(member=member, amount=100, now=now - timedelta(days=1))
    EarnFactory(member=member, amount=20, now=now)
    RedeemFactory(member=member, amount=110, now=now)

    reversal = reverse(refunded, now)

    # The refunded lot was spent entirely; the 10 points left elsewhere are taken back and the
    # other 90 are written off rather than pushing the balance below zero.
    assert reversal.amount == -10
    assert account(member).balance == 0
    assert_ledger_consistent(member.pk)


def test_expired_points_of_a_reversed_earn_are_not_taken_twice(member, now):
    refunded = EarnFactory(member=member, amount=100, now=now - timedelta(days=40), expires_at=now - timedelta(days=1))
    EarnFactory(member=member, amount=500, now=now)
    assert points_expire_due(now=now) == 1

    reversal = reverse(refunded, now)

    assert reversal.amount == 0
    assert account(member).balance == 500
    assert_ledger_consistent(member.pk)


def test_cancelling_a_redemption_puts_points_back_into_their_lots_with_their_expiry(member, now):
    old = EarnFactory(member=member, amount=100, now=now - timedelta(days=1))
    new = EarnFactory(member=member, amount=100, now=now)
    redemption = RedeemFactory(member=member, amount=150, now=now)

    reversal = reverse(redemption, now)

    assert reversal.amount == 150
    assert (remaining(old), remaining(new)) == (100, 100)
    assert (account(member).balance, account(member).lifetime_redeemed) == (200, 0)
    assert_ledger_consistent(member.pk)


def test_cancelling_a_redemption_does_not_revive_expired_points(member, now):
    soon = EarnFactory(member=member, amount=100, now=now, expires_at=now + timedelta(days=3))
    later = EarnFactory(member=member, amount=100, now=now)
    redemption = RedeemFactory(member=member, amount=150, now=now)

    reversal = reverse(redemption, now + timedelta(days=5))

    # 100 came from the lot that expired in between: those are gone; the other 50 come back.
    assert reversal.amount == 50
    assert (remaining(soon), remaining(later)) == (0, 100)
    assert_ledger_consistent(member.pk)


def test_cancelling_a_redemption_does_not_return_points_of_a_refunded_purchase(member, now):
    refunded = EarnFactory(member=member, amount=100, now=now)
    redemption = RedeemFactory(member=member, amount=100, now=now)
    reverse(refunded, now, key="refund")

    reversal = reverse(redemption, now, key="cancel")

    assert reversal.amount == 0
    assert account(member).balance == 0
    assert_ledger_consistent(member.pk)


def test_an_entry_is_reversed_once(member, now):
    lot = EarnFactory(member=member, amount=100, now=now)
    first = reverse(lot, now, key="rev1")

    assert reverse(lot, now, key="rev1").pk == first.pk
    with pytest.raises(ApplicationError):
        reverse(lot, now, key="rev2")
    assert PointsEntry.objects.filter(kind=EntryKind.REVERSE).count() == 1


def test_reversals_and_expiries_cannot_be_reversed(member, now):
    refunded = EarnFactory(member=member, amount=100, now=now)
    reversal = reverse(refunded, now, key="refund")
    EarnFactory(member=member, amount=100, now=now - timedelta(days=2), expires_at=now - timedelta(days=1))
    points_expire_due(now=now)
    expiry = PointsEntry.objects.get(kind=EntryKind.EXPIRE)

    for entry in (reversal, expiry):
        with pytest.raises(ApplicationError):
            reverse(entry, now, key=f"again:{entry.pk}")


def test_a_staff_reversal_needs_the_adjust_permission(member, now, operator, supervisor):
    lot = EarnFactory(member=member, amount=100, now=now)

    with pytest.raises(ApplicationError):
        points_reverse(entry=lot, reason="typo", idempotency_key="r1", actor=operator, now=now)
    reversal = points_reverse(entry=lot, reason="typo", idempotency_key="r2", actor=supervisor, now=now)

    assert reversal.actor == supervisor


def test_a_reversal_needs_a_reason(member, now):
    lot = EarnFactory(member=member, amount=100, now=now)

    with pytest.raises(ApplicationError):
        points_reverse(entry=lot, reason="  ", idempotency_key="r1", actor=UserFactory(is_superuser=True), now=now)
