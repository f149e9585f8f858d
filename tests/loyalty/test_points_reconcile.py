import pytest

from loyalty.models import PointsAccount, PointsEntry
from loyalty.services import LedgerDrift, points_reconcile
from tests.factories import MemberFactory
from tests.factories.loyalty import EarnFactory, RedeemFactory

pytestmark = pytest.mark.django_db


def test_a_consistent_ledger_reports_no_drift(now):
    for _ in range(3):
        member = MemberFactory()
        EarnFactory(member=member, amount=100, now=now)
        RedeemFactory(member=member, amount=30, now=now)

    assert points_reconcile() == []


def test_drift_of_the_cache_or_of_the_lots_is_reported_not_corrected(now, caplog):
    healthy, cache_drift, lot_drift = MemberFactory(), MemberFactory(), MemberFactory()
    for member in (healthy, cache_drift, lot_drift):
        EarnFactory(member=member, amount=100, now=now)
    # Hand edits in the database, the kind of thing reconciliation exists to catch.
    PointsAccount.objects.filter(member=cache_drift).update(balance=90)
    PointsEntry.objects.filter(member=lot_drift).update(remaining=60)

    drifts = points_reconcile(batch_size=2)

    assert drifts == [
        LedgerDrift(member_id=cache_drift.pk, balance=90, ledger_sum=100, open_lots_sum=100),
        LedgerDrift(member_id=lot_drift.pk, balance=100, ledger_sum=100, open_lots_sum=60),
    ]
    assert PointsAccount.objects.get(member=cache_drift).balance == 90
    assert f"member={cache_drift.pk} balance=90" in caplog.text
