from datetime import timedelta

import pytest

from crm.core.exceptions import ApplicationError
from loyalty.expiry import ExpiryPolicy
from loyalty.models import AppendOnlyError, EntryKind, LoyaltySettings, PointsAccount, PointsEntry
from loyalty.services import points_credit
from tests.factories import MemberEventFactory, MemberFactory
from tests.loyalty.conftest import SHANGHAI
from tests.loyalty.ledger import assert_ledger_consistent

pytestmark = pytest.mark.django_db


def test_credit_opens_a_lot_and_moves_the_cached_balance(member, now):
    event = MemberEventFactory(member=member)

    entry = points_credit(
        member=member, amount=120, reason="order E1", idempotency_key="earn:E1", source_event=event, now=now
    )

    assert (entry.kind, entry.amount, entry.remaining, entry.source_event) == (EntryKind.EARN, 120, 120, event)
    account = PointsAccount.objects.get(member=member)
    assert (account.balance, account.lifetime_earned) == (120, 120)
    assert_ledger_consistent(member.pk)


def test_expiry_follows_the_policy_staff_set(member, now):
    # Default: end of the 12th month after earning (earned 15 March 2026 → gone on 1 April 2027).
    first = points_credit(member=member, amount=10, reason="a", idempotency_key="a", now=now)
    assert first.expires_at == now.replace(year=2027, month=4, day=1, hour=0)

    config = LoyaltySettings.load()
    config.expiry_policy, config.expiry_period = ExpiryPolicy.DAYS, 30
    config.save()
    second = points_credit(member=member, amount=10, reason="b", idempotency_key="b", now=now)
    assert second.expires_at == now.replace(month=4, day=15, hour=0)

    config.expiry_policy = ExpiryPolicy.NEVER
    config.save()
    assert points_credit(member=member, amount=10, reason="c", idempotency_key="c", now=now).expires_at is None

    first.refresh_from_db()
    assert first.expires_at.astimezone(SHANGHAI).date().isoformat() == "2027-04-01"


def test_an_explicit_expiry_wins_but_must_be_in_the_future(member, now):
    entry = points_credit(
        member=member, amount=10, reason="promo", idempotency_key="p", expires_at=now + timedelta(days=7), now=now
    )
    assert entry.expires_at == now + timedelta(days=7)

    with pytest.raises(ApplicationError):
        points_credit(member=member, amount=10, reason="late", idempotency_key="q", expires_at=now, now=now)


def test_a_repeat_with_the_same_key_returns_the_first_entry_and_changes_nothing(member, now):
    first = points_credit(member=member, amount=50, reason="order E1", idempotency_key="earn:E1", now=now)

    again = points_credit(member=member, amount=50, reason="order E1", idempotency_key="earn:E1", now=now)

    assert again.pk == first.pk
    assert PointsEntry.objects.filter(member=member).count() == 1
    assert PointsAccount.objects.get(member=member).balance == 50


def test_a_key_reused_for_another_member_is_refused(member, now):
    points_credit(member=member, amount=50, reason="x", idempotency_key="k", now=now)

    with pytest.raises(ApplicationError):
        points_credit(member=MemberFactory(), amount=50, reason="x", idempotency_key="k", now=now)


@pytest.mark.parametrize("amount", [0, -5])
def test_only_positive_credits(member, amount):
    with pytest.raises(ApplicationError):
        points_credit(member=member, amount=amount, reason="x", idempotency_key="k")
    assert not PointsEntry.objects.exists()


def test_entries_are_never_edited_or_deleted(member, now):
    entry = points_credit(member=member, amount=50, reason="x", idempotency_key="k", now=now)
    entry.reason = "changed"

    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    entry.refresh_from_db()
    assert entry.reason == "x"
