"""End to end: the beat tasks of the health dashboard run in a real Celery worker on Redis."""

from datetime import timedelta

import pytest
from django.utils import timezone

from crm.health.models import Alarm, AlarmKind, DashboardTask, HealthSnapshot
from crm.health.tasks import check_community_alarms, take_health_snapshot
from members.models import EventKind
from tests.crm.test_celery_worker import _wait_until, worker  # noqa: F401 - the worker fixture
from tests.factories import MemberEventFactory, MemberFactory

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.celery_worker]


@pytest.mark.django_db(transaction=True)
def test_a_worker_takes_the_snapshot_and_raises_the_quiet_groups_alarm(worker):  # noqa: F811
    member = MemberFactory(joined_at=timezone.now() - timedelta(days=30))
    yesterday = timezone.localtime() - timedelta(days=1)
    MemberEventFactory(member=member, kind=EventKind.GROUP_MESSAGE, amount=None, occurred_at=yesterday)

    take_health_snapshot.apply_async(queue=worker.queue)
    check_community_alarms.apply_async(queue=worker.queue)

    _wait_until(lambda: HealthSnapshot.objects.filter(day=yesterday.date()).exists(), worker)
    _wait_until(lambda: Alarm.objects.filter(kind=AlarmKind.QUIET_GROUPS).exists(), worker)
    snapshot = HealthSnapshot.objects.get()
    assert (snapshot.members, snapshot.active_members, snapshot.group_messages) == (1, 1, 1)
    assert DashboardTask.objects.filter(status=DashboardTask.Status.OPEN).count() == 1
    _wait_until(lambda: "crm.health.tasks.check_community_alarms" in worker.output(), worker)
