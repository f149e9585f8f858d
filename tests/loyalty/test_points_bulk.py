"""points_credit_bulk: many members credited once each, set-based, on PostgreSQL and SQLite."""

import pytest

from crm.core.exceptions import ApplicationError
from loyalty.expiry import ExpiryPolicy
from loyalty.models import EntryKind, LoyaltySettings, PointsAccount, PointsEntry
from loyalty.services import points_credit, points_credit_bulk
from members.models import EventKind, Member, MemberEvent
from tests.factories import MemberEventFactory, MemberFactory
from tests.loyalty.ledger import assert_ledger_consistent
from tests.loyalty.test_concurrency import in_parallel

pytestmark = pytest.mark.django_db


def balances(members) -> dict[int, int]:
    return dict(PointsAccount.objects.filter(member__in=members).values_list("member_id", "balance"))


def test_every_member_gets_one_lot_with_key_source_and_actor(now, supervisor):
    members = MemberFactory.create_batch(5)
    points_credit(member=members[0], amount=7, reason="earlier", idempotency_key="earlier", now=now)

    credited = points_credit_bulk(
        members=Member.objects.filter(pk__in=[m.pk for m in members]),
        amount=200,
        reason="Compensation: late orders",
        idempotency_prefix="ticket:9:comp",
        source_ref="ticket:9",
        actor=supervisor,
        now=now,
    )

    assert credited == 5
    assert balances(members) == {m.pk: 200 for m in members[1:]} | {members[0].pk: 207}
    entries = PointsEntry.objects.filter(source_ref="ticket:9").order_by("member_id")
    assert [e.idempotency_key for e in entries] == [f"ticket:9:comp:{m.pk}" for m in members]
    first = entries[0]
    assert (first.kind, first.amount, first.remaining, first.actor, first.reason) == (
        EntryKind.EARN,
        200,
        200,
        supervisor,
        "Compensation: late orders",
    )
    assert first.created_at == now
    for member in members:
        assert_ledger_consistent(member.pk)
    assert PointsAccount.objects.get(member=members[1]).lifetime_earned == 200


def test_a_repeat_or_a_resumed_run_credits_nobody_twice(now):
    members = MemberFactory.create_batch(6)
    ids = [m.pk for m in members]
    # A run that stopped after the first three members.
    assert (
        points_credit_bulk(
            members=Member.objects.filter(pk__in=ids[:3]), amount=50, reason="r", idempotency_prefix="p", now=now
        )
        == 3
    )

    assert (
        points_credit_bulk(
            members=Member.objects.filter(pk__in=ids), amount=50, reason="r", idempotency_prefix="p", now=now
        )
        == 3
    )
    assert (
        points_credit_bulk(
            members=Member.objects.filter(pk__in=ids), amount=50, reason="r", idempotency_prefix="p", now=now
        )
        == 0
    )

    assert balances(members) == {pk: 50 for pk in ids}
    assert PointsEntry.objects.filter(idempotency_key__startswith="p:").count() == 6


def test_members_as_ids_of_another_table_with_duplicates_in_small_chunks(now):
    members = MemberFactory.create_batch(7)
    for member in members[:5]:
        MemberEventFactory.create_batch(2, member=member, kind=EventKind.COMPLAINT)
    progress = []

    credited = points_credit_bulk(
        members=MemberEvent.objects.filter(kind=EventKind.COMPLAINT).values("member_id"),
        amount=10,
        reason="sorry",
        idempotency_prefix="sorry",
        now=now,
        chunk_size=2,
        on_progress=lambda done, through, last: progress.append((done, through, last)),
    )

    assert credited == 5
    assert balances(members) == {m.pk: 10 for m in members[:5]}
    assert progress[-1] == (5, members[4].pk, members[4].pk)
    assert len(progress) == (members[4].pk - members[0].pk) // 2 + 1


def test_expiry_follows_the_loyalty_policy(now):
    config = LoyaltySettings.load()
    config.expiry_policy, config.expiry_period = ExpiryPolicy.DAYS, 30
    config.save()
    member = MemberFactory()

    points_credit_bulk(
        members=Member.objects.filter(pk=member.pk), amount=5, reason="r", idempotency_prefix="x", now=now
    )

    assert PointsEntry.objects.get(member=member).expires_at == now.replace(month=4, day=15, hour=0)


def test_nobody_to_credit_is_zero(now):
    assert points_credit_bulk(members=Member.objects.none(), amount=5, reason="r", idempotency_prefix="x", now=now) == 0
    assert not PointsAccount.objects.exists()


@pytest.mark.parametrize(
    "amount, reason, prefix",
    [(0, "r", "p"), (-5, "r", "p"), (5, " ", "p"), (5, "r", ""), (5, "r", "x" * 101)],
)
def test_bad_input_is_refused_and_writes_nothing(now, amount, reason, prefix):
    member = MemberFactory()
    with pytest.raises(ApplicationError):
        points_credit_bulk(
            members=Member.objects.filter(pk=member.pk),
            amount=amount,
            reason=reason,
            idempotency_prefix=prefix,
            now=now,
        )
    assert not PointsEntry.objects.exists()


def test_only_credit_kinds():
    with pytest.raises(ValueError):
        points_credit_bulk(
            members=Member.objects.all(), amount=5, reason="r", idempotency_prefix="p", kind=EntryKind.REDEEM
        )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_credit_each_member_once(now):
    members = MemberFactory.create_batch(40)
    points_credit(member=members[3], amount=1, reason="earlier", idempotency_key="earlier", now=now)
    ids = [m.pk for m in members]

    results = in_parallel(
        4,
        lambda i: points_credit_bulk(
            members=Member.objects.filter(pk__in=ids),
            amount=30,
            reason="r",
            idempotency_prefix="double-click",
            now=now,
            chunk_size=7,
        ),
    )

    assert sum(results) == 40, results
    assert balances(members) == {pk: 30 for pk in ids} | {members[3].pk: 31}
    for member in members:
        assert_ledger_consistent(member.pk)
