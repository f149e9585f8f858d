"""Ledger invariants, checked by many tests after the operations they run."""

from django.db.models import Sum

from loyalty.models import EntryKind, PointsAccount, PointsAllocation, PointsEntry
from loyalty.services import expiry_key


def assert_ledger_consistent(member_id: int) -> None:
    """Cache = ledger = open lots, never negative; every lot and debit agrees with its allocations."""
    account = PointsAccount.objects.filter(member_id=member_id).first()
    entries = list(
        PointsEntry.objects.filter(member_id=member_id).values_list(
            "id", "kind", "amount", "remaining", "idempotency_key"
        )
    )
    balance = account.balance if account else 0
    assert balance >= 0
    assert balance == sum(amount for _, _, amount, _, _ in entries) == sum(rest or 0 for _, _, _, rest, _ in entries)
    if account:
        assert balance == account.lifetime_earned - account.lifetime_redeemed - account.lifetime_expired

    allocations = PointsAllocation.objects.filter(entry__member_id=member_id)
    by_lot = dict(allocations.values("lot").annotate(s=Sum("amount")).values_list("lot", "s"))
    by_entry = dict(allocations.values("entry").annotate(s=Sum("amount")).values_list("entry", "s"))
    expired = {key: amount for _, kind, amount, _, key in entries if kind == EntryKind.EXPIRE}
    for entry_id, kind, amount, remaining, _ in entries:
        if remaining is not None:
            assert remaining == amount - by_lot.get(entry_id, 0) + expired.get(expiry_key(entry_id), 0), entry_id
        elif kind != EntryKind.EXPIRE:
            assert by_entry.get(entry_id, 0) == -amount, entry_id
