"""Grants of points or coupons to a member list that staff confirm in the member admin.

The request only records the grant: a LoyaltyJobRun with what to give and who asked, and the
member list as it was when confirmed (LoyaltyJobMember, one INSERT … SELECT of the filtered
list); a Celery task then runs it through the usual set-based services (points_credit_bulk,
coupons_issue) and keeps the run's progress up to date for the admin. One run per confirmation
page (its token is the run's key), and every member's entry or coupon carries a key made from
that token, so a double submit, a retried task or a worker killed halfway grants nothing twice.
"""

import logging

from django.contrib.auth.models import AbstractUser
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from loyalty.models import CouponBatch, EntryKind, LoyaltyJob, LoyaltyJobMember, LoyaltyJobRun
from loyalty.services.jobs import ERROR_MAX_CHARS
from loyalty.services.points import _require_positive, _require_reason, points_credit_bulk
from loyalty.services.rewards import coupons_issue
from members.models import Member

logger = logging.getLogger(__name__)


def grant_key(token: str) -> str:
    return f"admin-grant:{token}"


def member_list_grant_points(
    *, members: QuerySet[Member], amount: int, reason: str, token: str, actor: AbstractUser
) -> LoyaltyJobRun:
    """Record a grant of `amount` points (an adjustment, with `reason`) to each of `members`, and queue it."""
    _require_positive(amount)
    reason = _require_reason(reason)
    return _start(
        job=LoyaltyJob.GRANT_POINTS,
        members=members,
        token=token,
        actor=actor,
        params={"amount": amount, "reason": reason},
    )


def member_list_issue_coupons(
    *, members: QuerySet[Member], batch: CouponBatch, token: str, actor: AbstractUser
) -> LoyaltyJobRun:
    """Record an issue of one coupon of `batch` to each of `members`, and queue it."""
    return _start(job=LoyaltyJob.ISSUE_COUPONS, members=members, token=token, actor=actor, params={"batch": batch.pk})


def member_list_grant_run(*, run_id: int) -> LoyaltyJobRun:
    """Carry out a recorded grant; run again (a retry, a restarted worker) it gives only what is missing."""
    run = LoyaltyJobRun.objects.get(pk=run_id)
    if run.status == LoyaltyJobRun.Status.SUCCEEDED:
        return run
    LoyaltyJobRun.objects.filter(pk=run.pk).update(status=LoyaltyJobRun.Status.RUNNING, error="", finished_at=None)
    member_ids = LoyaltyJobMember.objects.filter(run_id=run.pk).values("member_id")

    def progress(given: int, done: int, total: int) -> None:
        LoyaltyJobRun.objects.filter(pk=run.pk).update(rows=given, progress=min(99, done * 100 // max(total, 1)))

    try:
        if run.job == LoyaltyJob.GRANT_POINTS:
            low = member_ids.order_by("member_id").values_list("member_id", flat=True).first() or 0
            given = points_credit_bulk(
                members=member_ids,
                amount=run.params["amount"],
                reason=run.params["reason"],
                idempotency_prefix=grant_key(run.key),
                source_ref=grant_key(run.key)[:64],
                kind=EntryKind.ADJUST,
                actor=run.requested_by,
                # By ranges of member ids: the share of the id span done stands for the share of the list.
                on_progress=lambda given, through, last: progress(given, through - low + 1, last - low + 1),
            )
        else:
            given = coupons_issue(
                batch=CouponBatch.objects.get(pk=run.params["batch"]),
                members=list(member_ids.order_by("member_id").values_list("member_id", flat=True)),
                issue_key=f"admin-members:{run.key}",
                on_progress=progress,
            )
    except Exception as error:
        LoyaltyJobRun.objects.filter(pk=run.pk).update(
            status=LoyaltyJobRun.Status.FAILED,
            finished_at=timezone.now(),
            error=f"{type(error).__name__}: {error}"[:ERROR_MAX_CHARS],
        )
        logger.exception("loyalty grant run %s failed", run.pk)
        raise
    with transaction.atomic():
        # `rows` counts what this run gave; a repeat after a kill counts only the rest.
        LoyaltyJobRun.objects.filter(pk=run.pk).update(
            status=LoyaltyJobRun.Status.SUCCEEDED, finished_at=timezone.now(), rows=given, progress=100
        )
        LoyaltyJobMember.objects.filter(run_id=run.pk).delete()
    run.refresh_from_db()
    return run


def _start(*, job: LoyaltyJob, members: QuerySet[Member], token: str, actor: AbstractUser, params: dict):
    from loyalty.tasks import run_member_list_grant

    with transaction.atomic():
        run, created = LoyaltyJobRun.objects.get_or_create(
            key=token, defaults={"job": job, "params": params, "requested_by": actor, "started_at": timezone.now()}
        )
        if not created:  # the same confirmation submitted again: already recorded and queued
            return run
        sql, sql_params = members.order_by().values("pk").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO {LoyaltyJobMember._meta.db_table} (run_id, member_id)
                SELECT %s, m.id FROM {Member._meta.db_table} m WHERE m.id IN ({sql})
                """,
                [run.pk, *sql_params],
            )
            count = cursor.rowcount
        LoyaltyJobRun.objects.filter(pk=run.pk).update(member_count=count)
        run.member_count = count
        transaction.on_commit(lambda: run_member_list_grant.delay(run.pk))
    return run
