"""Ledger invariants, checked by many tests after the operations they run."""

from django.db.models import Sum

from loyalty.models import EntryKind, PointsAccount, PointsAllocation, PointsEntry
from loyalty.services import expiry_key


def assert_ledger_consistent(member_id: int) -> None:
    account = PointsAccount.objects.filter(member_id=member_id).first()
    entries = PointsEntry.objects.filter(member_id=member_id)
    ledger_sum = entries.aggregate(s=Sum("amount"))["s"] or 0
    open_lots_sum = entries.aggregate(s=Sum("remaining"))["s"] or 0
    balance = account.balance if account else 0

    assert balance >= 0
    assert balance == ledger_sum == open_lots_sum
    if account:
        assert balance == account.lifetime_earned - account.lifetime_redeemed - account.lifetime_expired

    expired = dict(entries.filter(kind=EntryKind.EXPIRE).values_list("idempotency_key", "amount"))
    for lot in entries.filter(remaining__isnull=False):
        allocated = PointsAllocation.objects.filter(lot=lot).aggregate(s=Sum("amount"))["s"] or 0
        assert lot.remaining == lot.amount - allocated + expired.get(expiry_key(lot.pk), 0), lot
    for entry in entries.exclude(kind=EntryKind.EXPIRE).filter(amount__lt=0):
        allocated = PointsAllocation.objects.filter(entry=entry).aggregate(s=Sum("amount"))["s"] or 0
        assert allocated == -entry.amount, entry
