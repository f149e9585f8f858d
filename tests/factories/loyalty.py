"""Factories for the loyalty app. Ledger rows are made through the services, never written
directly, so every factory-made ledger keeps its invariants (balance = sum of entries)."""

import factory

from loyalty.models import EntryKind, PointsEntry
from loyalty.services import points_credit, points_debit
from tests.factories import MemberFactory


class _ServiceFactory(factory.Factory):
    class Meta:
        abstract = True

    member = factory.SubFactory(MemberFactory)
    reason = "test"


class EarnFactory(_ServiceFactory):
    """EarnFactory(member=m, amount=100, expires_at=...) credits a lot through points_credit."""

    class Meta:
        model = PointsEntry

    amount = 100
    kind = EntryKind.EARN
    idempotency_key = factory.Sequence(lambda n: f"test-earn:{n}")

    @classmethod
    def _create(cls, model_class, **kwargs):
        return points_credit(**kwargs)


class RedeemFactory(_ServiceFactory):
    """RedeemFactory(member=m, amount=30) redeems through points_debit."""

    class Meta:
        model = PointsEntry

    amount = 10
    kind = EntryKind.REDEEM
    idempotency_key = factory.Sequence(lambda n: f"test-redeem:{n}")

    @classmethod
    def _create(cls, model_class, **kwargs):
        return points_debit(**kwargs)
