"""Trust: a ticket's compensation, requested by an operator, approved by another supervisor, and
issued by a Celery task to every affected member once, through the loyalty services.

Points go through loyalty.services.points_credit_bulk with one idempotency key per member
(`ticket:<id>:comp:<member id>`) and the ticket as the entry's source (`ticket:<id>`), so each
member's ledger shows where the points came from; coupons go through coupons_issue with the issue
key `ticket:<id>`. Repeating the issue (a retried task, a second worker, a re-approval after a
failure) gives only what is still missing.
"""

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from crm.core.exceptions import ApplicationError
from crm.desk import selectors
from crm.desk.models import Clock, CompensationKind, CompensationStatus, EventKind, Ticket
from crm.desk.services import ACTIVE, APPROVE_PERMISSION, _lock, _record
from members.models import Member

logger = logging.getLogger(__name__)


def compensation_key_prefix(ticket_id: int) -> str:
    """Each member's points entry is `ticket:<id>:comp:<member id>`, so a member is credited once."""
    return f"ticket:{ticket_id}:comp"


@transaction.atomic
def compensation_request(
    *, ticket: Ticket, actor, kind: str, points: int = 0, batch=None, now: datetime | None = None
) -> Ticket:
    """Trust, first half: an operator states the compensation (points each, or a coupon of a batch)."""
    now = now or timezone.now()
    ticket = _lock(ticket, actor=actor, statuses=ACTIVE)
    if ticket.compensation_status not in (CompensationStatus.NONE, CompensationStatus.FAILED):
        raise ApplicationError(gettext("Compensation was already requested for this ticket."))
    if kind == CompensationKind.POINTS:
        if not points or points <= 0:
            message = gettext("The number of points must be positive.")
            raise ApplicationError(message, {"points": [message]})
        batch = None
    elif kind == CompensationKind.COUPON:
        if batch is None:
            message = gettext("Choose a coupon batch.")
            raise ApplicationError(message, {"batch": [message]})
        if batch.valid_until <= now:
            message = gettext("This coupon batch has expired.")
            raise ApplicationError(message, {"batch": [message]})
        points = 0
    else:
        raise ApplicationError(gettext("Choose points or a coupon."))
    ticket.compensation_kind, ticket.compensation_points, ticket.compensation_batch = kind, points, batch
    ticket.compensation_status = CompensationStatus.REQUESTED
    ticket.compensation_requested_by = actor
    ticket.compensation_approved_by = None
    ticket.save()
    _record(
        ticket,
        EventKind.COMPENSATION_REQUESTED,
        actor=actor,
        clock=Clock.TRUST,
        at=now,
        data={"kind": kind, "points": points, "batch": batch.pk if batch else None, "members": ticket.affected_count},
    )
    return ticket


def compensation_approve(*, ticket: Ticket, actor, now: datetime | None = None) -> Ticket:
    """Trust, second half: a supervisor (not the one who asked) approves; a Celery task issues it."""
    from crm.desk import tasks

    now = now or timezone.now()
    with transaction.atomic():
        ticket = _lock(ticket, actor=actor, statuses=ACTIVE)
        if actor is None or not actor.has_perm(APPROVE_PERMISSION):
            raise ApplicationError(gettext("Only a supervisor may approve compensation."))
        if ticket.compensation_status != CompensationStatus.REQUESTED:
            raise ApplicationError(gettext("There is no compensation awaiting approval."))
        if ticket.compensation_requested_by_id == actor.pk:
            raise ApplicationError(gettext("Compensation must be approved by someone other than who requested it."))
        ticket.compensation_status = CompensationStatus.RUNNING
        ticket.compensation_approved_by = actor
        ticket.save()
        _record(ticket, EventKind.COMPENSATION_APPROVED, actor=actor, clock=Clock.TRUST, at=now)
        transaction.on_commit(lambda: tasks.deliver_compensation.delay(ticket.pk))
    return ticket


def compensation_deliver(*, ticket_id: int, now: datetime | None = None) -> int:
    """Issue an approved compensation to every affected member once; return how many got it now.

    Safe to repeat (a retried task, a second worker): each member's points entry or coupon has its
    own key, so a repeat issues only what is missing. Progress is written to the ticket as it goes.
    """
    from loyalty.models import Coupon, PointsEntry
    from loyalty.services import coupons_issue, points_credit_bulk

    issued_at = now or timezone.now()
    ticket = Ticket.objects.select_related("compensation_batch", "compensation_approved_by").get(pk=ticket_id)
    if ticket.compensation_status != CompensationStatus.RUNNING:
        return 0
    members = selectors.ticket_member_ids(ticket=ticket)
    if ticket.compensation_kind == CompensationKind.POINTS:
        before = PointsEntry.objects.filter(source_ref=ticket.source_ref).count()

        def progress(credited: int, _through: int, _last: int) -> None:
            Ticket.objects.filter(pk=ticket.pk).update(compensation_issued=before + credited)

        issued = points_credit_bulk(
            members=members,
            amount=ticket.compensation_points,
            reason=(gettext("Compensation: %(title)s") % {"title": ticket.title})[:255],
            idempotency_prefix=compensation_key_prefix(ticket.pk),
            source_ref=ticket.source_ref,
            actor=ticket.compensation_approved_by,
            now=issued_at,
            on_progress=progress,
        )
        total = before + issued
    else:
        issued = coupons_issue(
            batch=ticket.compensation_batch,
            members=Member.objects.filter(pk__in=members),
            issue_key=ticket.source_ref,
            now=issued_at,
        )

        total = Coupon.objects.filter(batch=ticket.compensation_batch, issue_key=ticket.source_ref).count()
    with transaction.atomic():
        locked = Ticket.objects.select_for_update().get(pk=ticket.pk)
        locked.compensation_status = CompensationStatus.DONE
        locked.compensation_issued = total
        if locked.trust_done_at is None:
            locked.trust_done_at = now or timezone.now()
        locked.save()
        _record(
            locked,
            EventKind.COMPENSATION_DELIVERED,
            clock=Clock.TRUST,
            at=locked.trust_done_at,
            actor=ticket.compensation_approved_by,
            data={"issued_now": issued, "members": total},
        )
    logger.info("crisis compensation ticket=%s issued=%s total=%s", ticket.pk, issued, total)
    return issued


@transaction.atomic
def compensation_fail(*, ticket_id: int, error: str) -> None:
    """Issuing gave up (retries exhausted): staff see why and may request it again; what was issued
    stays issued, and a new run gives only the members still missing."""
    ticket = Ticket.objects.select_for_update().get(pk=ticket_id)
    if ticket.compensation_status != CompensationStatus.RUNNING:
        return
    ticket.compensation_status = CompensationStatus.FAILED
    ticket.save(update_fields=["compensation_status", "updated_at"])
    _record(ticket, EventKind.COMPENSATION_FAILED, clock=Clock.TRUST, note=error[:500])
