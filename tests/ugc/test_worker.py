"""End to end through a real Celery worker: approving a submission in the admin's service pays
its points through loyalty's earning task, once."""

import pytest
from celery import current_app

from campaigns.ugc import services
from loyalty.models import EarnRule, EarnRuleKind, PointsAccount, PointsEntry
from tests.crm.test_celery_worker import _wait_until, worker  # noqa: F401  (the worker fixture)
from tests.factories import MemberFactory
from tests.ugc.conftest import submit

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.celery_worker]


@pytest.fixture
def to_the_worker(worker):  # noqa: F811
    """Tasks sent with .delay() (as loyalty's receiver does) go to this test's worker only."""
    before = current_app.conf.task_default_queue
    current_app.conf.task_default_queue = worker.queue
    yield worker
    current_app.conf.task_default_queue = before


@pytest.mark.django_db(transaction=True)
def test_an_approved_submission_earns_its_points_through_the_worker_once(to_the_worker, operator):
    EarnRule.objects.create(name="UGC", kind=EarnRuleKind.UGC, sub_kind="approved", points=20)
    member = MemberFactory()
    submission = submit(member)

    services.submissions_approve(submission_ids=[submission.pk], actor=operator)
    _wait_until(lambda: PointsAccount.objects.filter(member=member, balance=20).exists(), to_the_worker)
    services.submissions_reject(submission_ids=[submission.pk], actor=operator, reason="撤下")
    services.submissions_approve(submission_ids=[submission.pk], actor=operator)

    _wait_until(lambda: to_the_worker.output().count("succeeded") >= 1, to_the_worker)
    assert PointsEntry.objects.filter(member=member).count() == 1
    assert PointsAccount.objects.get(member=member).balance == 20
    assert "loyalty.tasks.earn_points_for_events" in to_the_worker.output()
