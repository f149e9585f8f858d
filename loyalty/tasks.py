"""Thin Celery tasks: take ids, call a service, hold only retry logic.

The periodic ones run through loyalty.services.jobs.job_run, which keeps a LoyaltyJobRun row
(started, finished, rows, status, error) that staff see in the admin.
"""

from celery import shared_task

from crm.core.exceptions import ApplicationError


@shared_task(acks_late=True)
def expire_points() -> int:
    """Nightly: write the expiry entries of every lot whose expiry has passed."""
    from django.utils import timezone

    from loyalty.models import LoyaltyJob
    from loyalty.services import points_expire_due
    from loyalty.services.jobs import job_run

    return job_run(job=LoyaltyJob.POINTS_EXPIRY, work=lambda: points_expire_due(now=timezone.now())).rows


@shared_task(acks_late=True)
def reconcile_points() -> int:
    """Nightly: report accounts whose cached balance drifted from their ledger."""
    from loyalty.models import LoyaltyJob
    from loyalty.services import points_reconcile
    from loyalty.services.jobs import job_run

    return job_run(job=LoyaltyJob.RECONCILIATION, work=lambda: {"drifting_accounts": len(points_reconcile())}).rows


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def earn_points_for_events(event_ids: list[int]) -> int:
    """After ingest: earn the points of newly recorded events, reverse refunded purchases, and move
    members who now qualify up a tier. Idempotent (earn:<event id>), so a retry changes nothing."""
    from loyalty.services import points_earn_for_events, tiers_upgrade_if_qualified

    result = points_earn_for_events(event_ids=event_ids)
    tiers_upgrade_if_qualified(member_ids=result.member_ids)
    return result.entries


@shared_task(acks_late=True)
def expire_coupons() -> int:
    """Nightly: mark issued coupons whose validity ended as expired."""
    from loyalty.models import LoyaltyJob
    from loyalty.services import coupons_expire_due
    from loyalty.services.jobs import job_run

    return job_run(job=LoyaltyJob.COUPON_EXPIRY, work=coupons_expire_due).rows


@shared_task(acks_late=True)
def award_badges() -> int:
    """Nightly: award badges and titles by their rules, once per member; returns the new awards."""
    from loyalty.models import LoyaltyJob
    from loyalty.services import badges_award
    from loyalty.services.jobs import job_run

    return job_run(job=LoyaltyJob.BADGE_AWARDS, work=badges_award).rows


@shared_task(acks_late=True)
def review_tiers() -> int:
    """Nightly: renew, warn or downgrade the members whose tier reached its review date."""
    from loyalty.models import LoyaltyJob
    from loyalty.services import tier_review
    from loyalty.services.jobs import job_run

    return job_run(job=LoyaltyJob.TIER_REVIEW, work=tier_review).rows


@shared_task(
    acks_late=True,
    autoretry_for=(Exception,),
    # A refusal (the coupon batch expired since the grant was confirmed) would only be refused
    # again: the run is marked failed with its reason at once.
    dont_autoretry_for=(ApplicationError,),
    retry_backoff=True,
    max_retries=5,
)
def run_member_list_grant(run_id: int) -> int:
    """A grant of points or coupons to a member list, confirmed in the member admin; idempotent,
    so a retry or a redelivery after a killed worker gives only what is still missing."""
    from loyalty.services.grants import member_list_grant_run

    return member_list_grant_run(run_id=run_id).rows
