from datetime import timedelta

import pytest

from loyalty.models import EntryKind, PointsAccount, PointsEntry
from loyalty.services import expiry_key, points_expire_due
from tests.factories import MemberFactory
from tests.factories.loyalty import EarnFactory, RedeemFactory
from tests.loyalty.ledger import assert_ledger_consistent

pytestmark = pytest.mark.django_db


def test_due_lots_expire_with_what_is_left_of_them(now):
    alice, bob = MemberFactory(), MemberFactory()
    spent_half = EarnFactory(member=alice, amount=100, now=now - timedelta(days=30), expires_at=now)
    RedeemFactory(member=alice, amount=50, now=now - timedelta(days=1))
    not_yet = EarnFactory(member=alice, amount=10, now=now, expires_at=now + timedelta(seconds=1))
    bobs = EarnFactory(member=bob, amount=70, now=now - timedelta(days=30), expires_at=now - timedelta(days=1))

    assert points_expire_due(now=now) == 2

    expiries = PointsEntry.objects.filter(kind=EntryKind.EXPIRE)
    assert sorted(expiries.values_list("idempotency_key", "member_id", "amount")) == sorted(
        [(expiry_key(spent_half.pk), alice.pk, -50), (expiry_key(bobs.pk), bob.pk, -70)]
    )
    assert PointsEntry.objects.get(pk=not_yet.pk).remaining == 10
    assert list(PointsAccount.objects.filter(member=alice).values_list("balance", "lifetime_expired")) == [(10, 50)]
    assert list(PointsAccount.objects.filter(member=bob).values_list("balance", "lifetime_expired")) == [(0, 70)]
    assert_ledger_consistent(alice.pk)
    assert_ledger_consistent(bob.pk)


def test_running_expiry_again_changes_nothing(member, now):
    EarnFactory(member=member, amount=100, now=now - timedelta(days=30), expires_at=now - timedelta(days=1))
    points_expire_due(now=now)

    assert points_expire_due(now=now) == 0
    assert points_expire_due(now=now + timedelta(days=1)) == 0
    assert PointsEntry.objects.filter(kind=EntryKind.EXPIRE).count() == 1
    assert PointsAccount.objects.get(member=member).balance == 0


def test_fully_spent_lots_write_no_expiry(member, now):
    EarnFactory(member=member, amount=100, now=now - timedelta(days=30), expires_at=now - timedelta(days=1))
    RedeemFactory(member=member, amount=100, now=now - timedelta(days=2))

    assert points_expire_due(now=now) == 0
    assert not PointsEntry.objects.filter(kind=EntryKind.EXPIRE).exists()


@pytest.mark.parametrize("due", [1, 4, 5, 6])
def test_expiry_walks_every_range_of_lots(now, due):
    members = [MemberFactory() for _ in range(3)]
    # Due and current lots interleaved, each member's lots spread over the ledger.
    for index in range(due):
        member = members[index % 3]
        EarnFactory(member=member, amount=10, now=now - timedelta(days=30), expires_at=now - timedelta(days=1))
        EarnFactory(member=member, amount=1, now=now, expires_at=now + timedelta(days=1))

    # Ranges of two due lots: each its own transaction, with its own locks.
    assert points_expire_due(now=now, batch_size=2) == due
    assert PointsEntry.objects.filter(kind=EntryKind.EXPIRE).count() == due
    assert points_expire_due(now=now, batch_size=2) == 0
    for member in members[: min(due, 3)]:  # those given lots
        assert_ledger_consistent(member.pk)
        assert (
            PointsAccount.objects.get(member=member).balance
            == PointsEntry.objects.filter(member=member, kind=EntryKind.EARN, amount=1).count()
        )
