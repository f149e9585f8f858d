"""Run records of loyalty's periodic jobs (expiry, tier review, badge awards, reconciliation,
earn backfill, coupon expiry).

job_run wraps a job's service: it records the start in its own committed row before the work,
then the finish, the rows the work reports and how it ended, so staff see a run that is still
going or that failed in the admin (LoyaltyJobRun). The work itself commits in its own batches;
a failure is recorded and raised again for the task's retry logic.
"""

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from loyalty.models import LoyaltyJob, LoyaltyJobRun

logger = logging.getLogger(__name__)

# A run still "running" after this long was left by a worker that died (a nightly job here
# takes minutes); the next run of the same job marks it abandoned.
STUCK_AFTER = timedelta(hours=6)
ERROR_MAX_CHARS = 2000

Work = Callable[[], int | Mapping[str, int] | tuple[int, Mapping[str, int]]]


def job_run(*, job: LoyaltyJob | str, work: Work) -> LoyaltyJobRun:
    """Record one run of `job` around `work()`, which returns a row count, counts by kind, or both.

    Counts by kind are kept in `details`; `rows` is the count given, or else their sum.
    """
    job = LoyaltyJob(job)
    run = _run_start(job=job)
    try:
        result = work()
    except BaseException as error:
        LoyaltyJobRun.objects.filter(pk=run.pk).update(
            status=LoyaltyJobRun.Status.FAILED,
            finished_at=timezone.now(),
            # The class and message only: what the job's SQL or services raise names ids, never
            # a member's personal data.
            error=f"{type(error).__name__}: {error}"[:ERROR_MAX_CHARS],
        )
        logger.exception("loyalty job %s (run %s) failed", job.value, run.pk)
        raise
    rows, details = _rows_and_details(result)
    LoyaltyJobRun.objects.filter(pk=run.pk).update(
        status=LoyaltyJobRun.Status.SUCCEEDED, finished_at=timezone.now(), rows=rows, details=details
    )
    run.refresh_from_db()
    return run


@transaction.atomic
def _run_start(*, job: LoyaltyJob) -> LoyaltyJobRun:
    now = timezone.now()
    LoyaltyJobRun.objects.filter(job=job, status=LoyaltyJobRun.Status.RUNNING, started_at__lt=now - STUCK_AFTER).update(
        status=LoyaltyJobRun.Status.ABANDONED, finished_at=now
    )
    return LoyaltyJobRun.objects.create(job=job, started_at=now)


def _rows_and_details(result) -> tuple[int, dict[str, int]]:
    if isinstance(result, tuple):
        rows, counts = result
        return int(rows), {str(key): int(value) for key, value in counts.items()}
    if isinstance(result, Mapping):
        details = {str(key): int(value) for key, value in result.items()}
        return sum(details.values()), details
    return int(result or 0), {}
