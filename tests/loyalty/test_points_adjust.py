import pytest

from crm.core.exceptions import ApplicationError
from loyalty.models import EntryKind, PointsAccount, PointsEntry
from loyalty.services import points_adjust
from tests.factories.loyalty import EarnFactory
from tests.loyalty.ledger import assert_ledger_consistent

pytestmark = pytest.mark.django_db


def test_a_supervisor_adjusts_both_ways_and_is_recorded(member, supervisor, now):
    gift = points_adjust(
        member=member, amount=80, reason="apology for late delivery", idempotency_key="a1", actor=supervisor, now=now
    )
    correction = points_adjust(
        member=member, amount=-30, reason="double credit", idempotency_key="a2", actor=supervisor, now=now
    )

    assert [(e.kind, e.amount, e.reason, e.actor) for e in (gift, correction)] == [
        (EntryKind.ADJUST, 80, "apology for late delivery", supervisor),
        (EntryKind.ADJUST, -30, "double credit", supervisor),
    ]
    assert gift.expires_at is not None
    account = PointsAccount.objects.get(member=member)
    assert (account.balance, account.lifetime_earned) == (50, 50)
    assert_ledger_consistent(member.pk)


def test_operators_and_auditors_may_not_adjust(member, operator, auditor, now):
    for user in (operator, auditor, None):
        with pytest.raises(ApplicationError):
            points_adjust(member=member, amount=10, reason="why not", idempotency_key=f"a:{user}", actor=user, now=now)
    assert not PointsEntry.objects.exists()


@pytest.mark.parametrize(("amount", "reason"), [(10, ""), (10, "   "), (0, "nothing")])
def test_an_adjustment_needs_a_reason_and_points(member, supervisor, amount, reason):
    with pytest.raises(ApplicationError):
        points_adjust(member=member, amount=amount, reason=reason, idempotency_key="a1", actor=supervisor)


def test_taking_more_than_the_balance_is_refused(member, supervisor, now):
    EarnFactory(member=member, amount=20, now=now)

    with pytest.raises(ApplicationError):
        points_adjust(member=member, amount=-21, reason="correction", idempotency_key="a1", actor=supervisor, now=now)
    assert PointsAccount.objects.get(member=member).balance == 20
