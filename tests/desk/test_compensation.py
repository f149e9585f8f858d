"""Trust: compensation approved by a supervisor, issued once per member, on each member's ledger."""

from datetime import timedelta
from decimal import Decimal

import pytest

from crm.core.exceptions import ApplicationError
from crm.desk import compensation, services
from crm.desk.models import CompensationStatus, EventKind
from crm.desk.tasks import deliver_compensation
from loyalty.models import Coupon, PointsAccount, PointsEntry
from tests.loyalty.ledger import assert_ledger_consistent

pytestmark = pytest.mark.django_db


def requested(ticket, operator, now, points=200):
    return compensation.compensation_request(ticket=ticket, actor=operator, kind="points", points=points, now=now)


def balances(members) -> dict[int, int]:
    return dict(PointsAccount.objects.filter(member__in=members).values_list("member_id", "balance"))


def test_approved_points_reach_every_member_once_with_the_ticket_as_source(
    open_ticket, members, operator, supervisor, now, django_capture_on_commit_callbacks
):
    requested(open_ticket, operator, now)
    with django_capture_on_commit_callbacks() as callbacks:
        ticket = compensation.compensation_approve(ticket=open_ticket, actor=supervisor, now=now)
    assert ticket.compensation_status == CompensationStatus.RUNNING
    assert len(callbacks) == 1  # the Celery task is queued once the approval is committed

    assert compensation.compensation_deliver(ticket_id=ticket.pk, now=now + timedelta(hours=2)) == 4

    assert balances(members) == {m.pk: 200 for m in members}
    entries = PointsEntry.objects.filter(source_ref=f"ticket:{ticket.pk}")
    assert sorted(entries.values_list("idempotency_key", flat=True)) == sorted(
        f"ticket:{ticket.pk}:comp:{m.pk}" for m in members
    )
    assert set(entries.values_list("actor", flat=True)) == {supervisor.pk}
    ticket.refresh_from_db()
    assert (ticket.compensation_status, ticket.compensation_issued) == (CompensationStatus.DONE, 4)
    assert ticket.trust_done_at == now + timedelta(hours=2)
    assert list(ticket.events.order_by("pk").values_list("kind", "actor")) == [
        (EventKind.OPENED, operator.pk),
        (EventKind.COMPENSATION_REQUESTED, operator.pk),
        (EventKind.COMPENSATION_APPROVED, supervisor.pk),
        (EventKind.COMPENSATION_DELIVERED, supervisor.pk),
    ]
    for member in members:
        assert_ledger_consistent(member.pk)


def test_a_retried_task_and_a_double_click_credit_each_member_once(open_ticket, members, operator, supervisor, now):
    requested(open_ticket, operator, now)
    compensation.compensation_approve(ticket=open_ticket, actor=supervisor, now=now)
    with pytest.raises(ApplicationError):  # the second click finds nothing awaiting approval
        compensation.compensation_approve(ticket=open_ticket, actor=supervisor, now=now)

    # The worker died after the entries were written but before the ticket was marked done: the
    # ticket is still "being issued", and the retry runs the whole thing again.
    from loyalty.services import points_credit_bulk
    from members.models import Member

    points_credit_bulk(
        members=Member.objects.filter(pk__in=[m.pk for m in members[:2]]),
        amount=200,
        reason="partial run",
        idempotency_prefix=compensation.compensation_key_prefix(open_ticket.pk),
        source_ref=open_ticket.source_ref,
    )
    assert deliver_compensation.apply(args=[open_ticket.pk]).get() == 2
    assert deliver_compensation.apply(args=[open_ticket.pk]).get() == 0  # done: a late duplicate does nothing

    assert balances(members) == {m.pk: 200 for m in members}
    assert PointsEntry.objects.filter(source_ref=open_ticket.source_ref).count() == 4
    open_ticket.refresh_from_db()
    assert open_ticket.compensation_issued == 4


def test_only_another_supervisor_may_approve(open_ticket, operator, supervisor, second_supervisor, now):
    compensation.compensation_request(ticket=open_ticket, actor=supervisor, kind="points", points=50, now=now)
    with pytest.raises(ApplicationError):
        compensation.compensation_approve(ticket=open_ticket, actor=operator, now=now)
    with pytest.raises(ApplicationError):
        compensation.compensation_approve(ticket=open_ticket, actor=supervisor, now=now)
    approved = compensation.compensation_approve(ticket=open_ticket, actor=second_supervisor, now=now)
    assert approved.compensation_status == CompensationStatus.RUNNING


def test_a_bad_request_is_refused_and_a_second_request_waits_for_the_first(open_ticket, operator, now):
    with pytest.raises(ApplicationError):
        compensation.compensation_request(ticket=open_ticket, actor=operator, kind="points", points=0, now=now)
    with pytest.raises(ApplicationError):
        compensation.compensation_request(ticket=open_ticket, actor=operator, kind="coupon", now=now)
    requested(open_ticket, operator, now)
    with pytest.raises(ApplicationError):
        requested(open_ticket, operator, now, points=500)


def test_a_coupon_compensation_issues_one_coupon_each(open_ticket, members, operator, supervisor, now):
    from loyalty.models import CouponBatch

    batch = CouponBatch.objects.create(
        name="Sorry: 20 off",
        value=Decimal(20),
        valid_from=now - timedelta(days=1),
        valid_until=now + timedelta(days=30),
    )
    compensation.compensation_request(ticket=open_ticket, actor=operator, kind="coupon", batch=batch, now=now)
    compensation.compensation_approve(ticket=open_ticket, actor=supervisor, now=now)
    assert compensation.compensation_deliver(ticket_id=open_ticket.pk, now=now) == 4
    assert compensation.compensation_deliver(ticket_id=open_ticket.pk, now=now) == 0
    assert Coupon.objects.filter(batch=batch, issue_key=open_ticket.source_ref).count() == 4
    open_ticket.refresh_from_db()
    assert (open_ticket.compensation_status, open_ticket.compensation_issued) == (CompensationStatus.DONE, 4)


def test_a_failed_run_can_be_requested_again_and_gives_only_what_is_missing(
    open_ticket, operator, supervisor, second_supervisor, members, now
):
    requested(open_ticket, operator, now)
    compensation.compensation_approve(ticket=open_ticket, actor=supervisor, now=now)
    compensation.compensation_fail(ticket_id=open_ticket.pk, error="worker lost")
    open_ticket.refresh_from_db()
    assert open_ticket.compensation_status == CompensationStatus.FAILED
    assert compensation.compensation_deliver(ticket_id=open_ticket.pk, now=now) == 0  # not approved any more

    requested(open_ticket, operator, now)
    compensation.compensation_approve(ticket=open_ticket, actor=second_supervisor, now=now)
    assert compensation.compensation_deliver(ticket_id=open_ticket.pk, now=now) == 4
    assert balances(members) == {m.pk: 200 for m in members}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_credit_each_member_once(operator, supervisor, now):
    from tests.factories import MemberFactory
    from tests.loyalty.test_concurrency import in_parallel

    members = MemberFactory.create_batch(30)
    ticket = services.ticket_open(
        title="t",
        description="",
        severity="high",
        source="staff",
        member_numbers=[m.external_id for m in members],
        now=now,
    )
    requested(ticket, operator, now)
    compensation.compensation_approve(ticket=ticket, actor=supervisor, now=now)

    results = in_parallel(3, lambda i: compensation.compensation_deliver(ticket_id=ticket.pk, now=now))

    assert sum(results) == 30, results
    assert balances(members) == {m.pk: 200 for m in members}
