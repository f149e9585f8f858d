"""Earning from real parallel connections (PostgreSQL): overlapping batches earn each event once."""

from collections import Counter
from decimal import Decimal

import pytest
from django.utils import timezone

from loyalty.models import EarnRule, EarnRuleKind, PointsEntry
from loyalty.services import points_debit, points_earn_for_events
from members.models import EventKind
from tests.factories import MemberEventFactory, MemberFactory
from tests.loyalty.ledger import assert_ledger_consistent
from tests.loyalty.test_concurrency import in_parallel, outcome

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_overlapping_earn_batches_and_redemptions_at_once_earn_each_event_once():
    EarnRule.objects.create(name="1 元 1 分", kind=EarnRuleKind.PURCHASE, points=1)
    EarnRule.objects.create(name="点赞", kind=EarnRuleKind.INTERACTION, points=3, daily_cap=10)
    members = MemberFactory.create_batch(6)
    now = timezone.now()
    ids = []
    for member in members:
        ids.append(MemberEventFactory(member=member, amount=Decimal("50"), occurred_at=now).pk)
        ids += [
            MemberEventFactory(
                member=member, kind=EventKind.INTERACTION, sub_kind="like", amount=None, occurred_at=now
            ).pk
            for _ in range(5)
        ]

    def call(index: int):
        if index >= 8:
            member = members[index % len(members)]
            return points_debit(member=member, amount=20, reason="coupon", idempotency_key=f"redeem:{index}")
        # Each call earns a different, overlapping slice of the events (in a different order).
        chosen = ids[index * 3 :] + ids[: index * 3]
        return points_earn_for_events(event_ids=chosen[: len(ids) * 2 // 3])

    results = in_parallel(12, call)

    assert not [r for r in results if isinstance(r, Exception) and outcome(r) != "ApplicationError"]
    earned = Counter(PointsEntry.objects.filter(kind="earn").values_list("source_event_id", flat=True))
    assert set(earned.values()) == {1}
    # 50 for the purchase and the daily cap of 10 for five likes of 3, whatever the interleaving.
    for member in members:
        assert sum(PointsEntry.objects.filter(member=member, kind="earn").values_list("amount", flat=True)) == 60
        assert_ledger_consistent(member.pk)


@pytest.mark.parametrize("some_on_a_tier", [False, True])
def test_parallel_tier_upgrades_of_the_same_members_record_each_change_once(some_on_a_tier):
    from loyalty.models import MemberTier, Tier, TierChange
    from loyalty.services import tier_assign, tiers_upgrade_if_qualified

    members = MemberFactory.create_batch(8)
    now = timezone.now()
    for member in members:
        MemberEventFactory(member=member, amount=Decimal("2500"), occurred_at=now)
    ids = [member.pk for member in members]
    if some_on_a_tier:
        # Rows to lock next to rows to insert: locking the existing ones first and inserting the
        # missing ones after took locks out of member order and deadlocked.
        for member in members[1::2]:
            tier_assign(member=member, tier=Tier.objects.get(code="bronze"), reason="test")

    # Different orders and overlapping slices, from eight connections at once; no retries.
    results = in_parallel(8, lambda index: tiers_upgrade_if_qualified(member_ids=(ids[index:] + ids[:index])[:6]))

    assert not [r for r in results if isinstance(r, Exception)]
    assert set(MemberTier.objects.values_list("tier__code", flat=True)) == {"gold"}
    assert MemberTier.objects.count() == 8
    expected = Counter(ids) + (Counter(m.pk for m in members[1::2]) if some_on_a_tier else Counter())
    assert Counter(TierChange.objects.values_list("member_id", flat=True)) == expected
