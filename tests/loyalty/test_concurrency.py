"""Real parallel connections against PostgreSQL (select_for_update does nothing on SQLite)."""

import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from loyalty.models import EntryKind, PointsAccount, PointsEntry
from loyalty.services import points_credit, points_debit, points_expire_due, points_reverse
from tests.factories import MemberFactory
from tests.factories.loyalty import EarnFactory
from tests.loyalty.ledger import assert_ledger_consistent

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def in_parallel(count: int, call: Callable[[int], object]) -> list[object]:
    """Run call(0..count-1) in as many threads, each with its own connection, released together."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def worker(index: int) -> None:
        try:
            barrier.wait()
            results[index] = call(index)
        except Exception as exc:  # noqa: BLE001 - the test inspects what each thread got
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def outcome(result: object) -> str:
    return type(result).__name__


def test_fifty_parallel_redemptions_never_overdraw_the_balance():
    member = MemberFactory()
    now = timezone.now()
    for amount, days in ((400, 10), (300, 20), (300, 400)):
        EarnFactory(member=member, amount=amount, now=now, expires_at=now + timedelta(days=days))

    results = in_parallel(
        50,
        lambda i: points_debit(member=member, amount=30, reason="coupon", idempotency_key=f"redeem:{i}"),
    )

    # 1,000 points pay for 33 redemptions of 30; the other 17 are refused, none fails otherwise.
    assert Counter(map(outcome, results)) == {"PointsEntry": 33, "ApplicationError": 17}
    assert PointsAccount.objects.get(member=member).balance == 10
    assert_ledger_consistent(member.pk)


def test_the_same_earn_from_parallel_calls_is_recorded_once():
    member = MemberFactory()  # no account yet: the calls also race to create it

    results = in_parallel(
        20,
        lambda i: points_credit(member=member, amount=88, reason="order E1", idempotency_key="earn:E1"),
    )

    assert {outcome(result) for result in results} == {"PointsEntry"}
    assert len({result.pk for result in results}) == 1
    assert PointsEntry.objects.filter(member=member).count() == 1
    assert PointsAccount.objects.get(member=member).balance == 88
    assert_ledger_consistent(member.pk)


def test_parallel_reversals_of_one_entry_reverse_it_once():
    member = MemberFactory()
    lot = EarnFactory(member=member, amount=100)

    results = in_parallel(
        10,
        lambda i: points_reverse(entry=lot, reason="refund", idempotency_key=f"refund:{i}"),
    )

    assert Counter(map(outcome, results)) == {"PointsEntry": 1, "ApplicationError": 9}
    assert PointsEntry.objects.filter(kind=EntryKind.REVERSE).count() == 1
    assert PointsAccount.objects.get(member=member).balance == 0
    assert_ledger_consistent(member.pk)


def test_the_expiry_job_and_redemptions_running_together_keep_the_ledger_whole():
    members = [MemberFactory() for _ in range(4)]
    now = timezone.now()
    for member in members:
        EarnFactory(member=member, amount=100, now=now - timedelta(days=30), expires_at=now - timedelta(minutes=1))
        EarnFactory(member=member, amount=100, now=now)

    def call(index: int):
        if index % 5 == 0:
            return points_expire_due(now=now)
        member = members[index % len(members)]
        return points_debit(member=member, amount=20, reason="coupon", idempotency_key=f"redeem:{index}", now=now)

    results = in_parallel(20, call)

    assert not [result for result in results if isinstance(result, Exception)]
    assert PointsEntry.objects.filter(kind=EntryKind.EXPIRE).count() == 4
    for member in members:
        assert_ledger_consistent(member.pk)
    # 16 redemptions of 20 came out of the 400 valid points; the 400 expired ones were never spent.
    assert sum(PointsAccount.objects.values_list("balance", flat=True)) == 400 - 16 * 20
