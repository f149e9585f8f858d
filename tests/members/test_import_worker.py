"""End to end: an upload too large to run inline goes through Redis to a real worker process."""

import pytest

from members import tasks
from members.models import ImportJob, Member
from members.services import import_job_create
from tests.crm.test_celery_worker import _wait_until, worker  # noqa: F401  (the worker fixture)
from tests.members.test_import_members import csv_upload

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.celery_worker]


@pytest.mark.django_db(transaction=True)
def test_a_worker_process_runs_a_background_import(worker, settings, monkeypatch):  # noqa: F811
    settings.CRM_IMPORT_INLINE_MAX_ROWS = 2
    # The service enqueues with delay(); this worker listens on a queue of its own.
    monkeypatch.setattr(
        tasks.run_import_job,
        "delay",
        lambda job_id: tasks.run_import_job.apply_async(args=[job_id], queue=worker.queue),
    )
    rows = [["会员编号", "手机号"], *([f"W{n}", f"13900{n:06d}"] for n in range(50))]

    job = import_job_create(target=ImportJob.Target.MEMBERS, file=csv_upload(rows))

    try:
        assert job.status == ImportJob.Status.PENDING
        _wait_until(lambda: ImportJob.objects.get(pk=job.pk).is_finished, worker)
        job.refresh_from_db()
        assert (job.status, job.created_count, job.processed_rows) == (ImportJob.Status.SUCCEEDED, 50, 50)
        assert Member.objects.filter(external_id__startswith="W").count() == 50
        assert "members.tasks.run_import_job" in worker.output()
    finally:
        job.file.delete(save=False)
