"""Runs of loyalty's periodic jobs are recorded: started, finished, rows, status, error."""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from loyalty.models import LoyaltyJob, LoyaltyJobRun, PointsAccount
from loyalty.services.jobs import STUCK_AFTER, job_run
from loyalty.tasks import award_badges, expire_coupons, expire_points, reconcile_points, review_tiers
from tests.factories.loyalty import EarnFactory

pytestmark = pytest.mark.django_db


def test_a_job_run_records_start_finish_and_rows(member):
    now = timezone.now()
    EarnFactory(member=member, amount=40, now=now - timedelta(days=400), expires_at=now - timedelta(minutes=1))

    assert expire_points.apply().get() == 1

    run = LoyaltyJobRun.objects.get()
    assert (run.job, run.status, run.rows, run.error) == (LoyaltyJob.POINTS_EXPIRY, "succeeded", 1, "")
    assert run.started_at <= run.finished_at
    assert PointsAccount.objects.get(member=member).balance == 0


def test_every_periodic_task_records_its_run(member):
    EarnFactory(member=member, amount=40)
    PointsAccount.objects.filter(member=member).update(balance=41)  # drift for the reconciliation

    reconcile_points.apply().get()
    award_badges.apply().get()
    review_tiers.apply().get()
    expire_coupons.apply().get()

    runs = {run.job: run for run in LoyaltyJobRun.objects.all()}
    assert set(runs) == {
        LoyaltyJob.RECONCILIATION,
        LoyaltyJob.BADGE_AWARDS,
        LoyaltyJob.TIER_REVIEW,
        LoyaltyJob.COUPON_EXPIRY,
    }
    assert all(run.status == LoyaltyJobRun.Status.SUCCEEDED for run in runs.values())
    assert (runs[LoyaltyJob.RECONCILIATION].rows, runs[LoyaltyJob.RECONCILIATION].details) == (
        1,
        {"drifting_accounts": 1},
    )
    assert set(runs[LoyaltyJob.TIER_REVIEW].details) == {"renewed", "warned", "downgraded"}


def test_a_failing_job_is_recorded_as_failed_and_raises():
    def work():
        raise RuntimeError("statement timeout")

    with pytest.raises(RuntimeError):
        job_run(job=LoyaltyJob.BADGE_AWARDS, work=work)

    run = LoyaltyJobRun.objects.get()
    assert (run.status, run.error) == (LoyaltyJobRun.Status.FAILED, "RuntimeError: statement timeout")
    assert run.finished_at is not None


def test_a_run_left_running_by_a_dead_worker_is_marked_abandoned_by_the_next():
    stuck = LoyaltyJobRun.objects.create(job=LoyaltyJob.TIER_REVIEW, started_at=timezone.now() - STUCK_AFTER * 2)
    recent = LoyaltyJobRun.objects.create(job=LoyaltyJob.BADGE_AWARDS, started_at=timezone.now() - STUCK_AFTER * 2)

    job_run(job=LoyaltyJob.TIER_REVIEW, work=lambda: 0)

    stuck.refresh_from_db()
    recent.refresh_from_db()
    assert stuck.status == LoyaltyJobRun.Status.ABANDONED
    assert recent.status == LoyaltyJobRun.Status.RUNNING  # another job's run is left alone


def test_the_backfill_command_records_its_run(member):
    call_command("earn_points_backfill", "--no-tiers", stdout=io.StringIO())

    run = LoyaltyJobRun.objects.get()
    assert run.job == LoyaltyJob.EARN_BACKFILL
    assert run.details == {"entries": 0, "points": 0, "refunds": 0, "tier_upgrades": 0}


@pytest.mark.parametrize("role", ["operator", "auditor", "supervisor"])
def test_staff_see_job_runs_read_only(client, request, role):
    client.force_login(request.getfixturevalue(role))
    job_run(job=LoyaltyJob.POINTS_EXPIRY, work=lambda: 7)
    run = LoyaltyJobRun.objects.get()

    listing = client.get(reverse("admin:loyalty_loyaltyjobrun_changelist"))
    page = client.get(reverse("admin:loyalty_loyaltyjobrun_change", args=[run.pk]))

    assert listing.status_code == page.status_code == 200
    assert "Points expiry" in listing.text
    assert 'name="_save"' not in page.text
    assert client.post(reverse("admin:loyalty_loyaltyjobrun_delete", args=[run.pk]), {"post": "yes"}).status_code == 403
