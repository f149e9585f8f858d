"""Alarm checks running at once on real parallel PostgreSQL connections raise an episode once."""

import pytest

from crm.health.models import Alarm, DashboardTask
from crm.health.services import alarms_check, check_quiet_groups
from tests.factories import MemberFactory
from tests.loyalty.test_concurrency import in_parallel

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_parallel_checks_raise_the_quiet_groups_alarm_and_its_task_once(now):
    MemberFactory()  # the groups said nothing for days

    results = in_parallel(4, lambda _i: alarms_check(checks=[check_quiet_groups], now=now))

    assert sorted(len(raised) for raised in results) == [0, 0, 0, 1]
    assert Alarm.objects.count() == 1
    assert DashboardTask.objects.count() == 1
