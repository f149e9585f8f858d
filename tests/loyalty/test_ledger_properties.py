"""Property-based tests of the points ledger (hypothesis stateful testing).

Random sequences of credits, debits, reversals, replays, expiry runs and the passing of time run
against the real services and, side by side, against a few lines of reference model (lots with
what remains of them). After every step the cached balance is never negative and equals the
model's, and every lot holds exactly what the model's first-in, first-out consumption says it
should; at the end of each example the balance is also the sum of the entries, and every lot and
debit agrees with its allocations.
"""

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from django.db import transaction
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from crm.core.exceptions import ApplicationError
from loyalty.models import EntryKind, PointsAccount, PointsEntry
from loyalty.services import points_credit, points_debit, points_expire_due, points_reverse
from tests.factories import MemberFactory
from tests.loyalty.conftest import SHANGHAI
from tests.loyalty.ledger import assert_ledger_consistent

START = datetime(2026, 1, 1, 9, 0, tzinfo=SHANGHAI)


@dataclass
class Lot:
    amount: int
    expires_at: datetime | None
    remaining: int
    expired: int = 0
    reversed: bool = False


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        # Each example runs in a savepoint rolled back at teardown, so examples don't share rows.
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        self.member = MemberFactory()
        self.now = START
        self.keys = (f"prop:{n}" for n in itertools.count())
        self.lots: dict[int, Lot] = {}
        self.debits: dict[int, dict[int, int]] = {}
        self.reversible: list[int] = []
        self.credits: list[tuple[PointsEntry, dict]] = []

    def teardown(self):
        try:
            # The full check costs a few queries more, so it runs once per example.
            assert_ledger_consistent(self.member.pk)
        finally:
            transaction.set_rollback(True)
            self.atomic.__exit__(None, None, None)

    # --- the reference model ---

    @property
    def balance(self) -> int:
        return sum(lot.remaining for lot in self.lots.values())

    def due(self) -> list[int]:
        return [
            lot_id
            for lot_id, lot in self.lots.items()
            if lot.remaining and lot.expires_at is not None and lot.expires_at <= self.now
        ]

    def model_expire(self) -> int:
        due = self.due()
        for lot_id in due:
            lot = self.lots[lot_id]
            lot.expired, lot.remaining = lot.remaining, 0
        return len(due)

    def model_consume(self, points: int) -> dict[int, int]:
        taken: dict[int, int] = {}
        spending_order = sorted(
            (lot_id for lot_id, lot in self.lots.items() if lot.remaining),
            key=lambda lot_id: (self.lots[lot_id].expires_at is None, self.lots[lot_id].expires_at or START, lot_id),
        )
        for lot_id in spending_order:
            if not points:
                break
            take = min(points, self.lots[lot_id].remaining)
            self.lots[lot_id].remaining -= take
            taken[lot_id] = take
            points -= take
        return taken

    # --- operations ---

    @rule(
        amount=st.integers(1, 200),
        # 0: by the expiry policy (a year or more away); otherwise short lives that time can pass.
        lifetime_days=st.integers(0, 30),
        kind=st.sampled_from([EntryKind.EARN, EntryKind.ADJUST]),
    )
    def credit(self, amount, lifetime_days, kind):
        expires_at = self.now + timedelta(days=lifetime_days) if lifetime_days else None
        kwargs = dict(
            member=self.member,
            amount=amount,
            reason="prop",
            idempotency_key=next(self.keys),
            kind=kind,
            expires_at=expires_at,
            now=self.now,
        )
        entry = points_credit(**kwargs)
        assert entry.expires_at > self.now
        self.lots[entry.pk] = Lot(amount=amount, expires_at=entry.expires_at, remaining=amount)
        self.reversible.append(entry.pk)
        self.credits.append((entry, kwargs))

    @rule(amount=st.integers(1, 150), kind=st.sampled_from([EntryKind.REDEEM, EntryKind.ADJUST]))
    def debit(self, amount, kind):
        spendable = self.balance - sum(self.lots[lot_id].remaining for lot_id in self.due())
        if amount > spendable:
            with pytest.raises(ApplicationError):
                points_debit(
                    member=self.member,
                    amount=amount,
                    reason="prop",
                    idempotency_key=next(self.keys),
                    kind=kind,
                    now=self.now,
                )
            return
        entry = points_debit(
            member=self.member, amount=amount, reason="prop", idempotency_key=next(self.keys), kind=kind, now=self.now
        )
        self.model_expire()
        self.debits[entry.pk] = self.model_consume(amount)
        self.reversible.append(entry.pk)

    @precondition(lambda self: self.reversible)
    @rule(data=st.data())
    def reverse(self, data):
        entry_id = data.draw(st.sampled_from(self.reversible))
        self.reversible.remove(entry_id)
        reversal = points_reverse(
            entry=PointsEntry.objects.get(pk=entry_id), reason="prop", idempotency_key=next(self.keys), now=self.now
        )
        self.model_expire()
        if entry_id in self.lots:
            lot = self.lots[entry_id]
            own = lot.remaining
            spent = lot.amount - own - lot.expired
            lot.remaining, lot.reversed = 0, True
            expected = -(own + sum(self.model_consume(min(spent, self.balance)).values()))
        else:
            expected = 0
            for lot_id, points in self.debits[entry_id].items():
                lot = self.lots[lot_id]
                if not lot.reversed and lot.expires_at > self.now:
                    lot.remaining += points
                    expected += points
        assert reversal.amount == expected

    @rule(days=st.integers(1, 30))
    def time_passes(self, days):
        self.now += timedelta(days=days)

    @rule()
    def expire(self):
        assert points_expire_due(now=self.now) == self.model_expire()

    @precondition(lambda self: self.credits)
    @rule(data=st.data())
    def replay_a_credit(self, data):
        first, kwargs = data.draw(st.sampled_from(self.credits))
        assert points_credit(**{**kwargs, "now": self.now}).pk == first.pk

    # --- what must always hold ---

    @invariant()
    def ledger_matches_the_model(self):
        balance = PointsAccount.objects.filter(member=self.member).values_list("balance", flat=True).first() or 0
        assert balance == self.balance >= 0
        lots = PointsEntry.objects.filter(member=self.member, remaining__isnull=False)
        assert dict(lots.values_list("id", "remaining")) == {lot_id: lot.remaining for lot_id, lot in self.lots.items()}


@pytest.mark.django_db
def test_ledger_behaves_like_its_reference_model():
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(max_examples=40, stateful_step_count=20, deadline=None, database=None),
    )
