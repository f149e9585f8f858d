from datetime import timedelta

import pytest
from django.utils import timezone

from loyalty.models import PointsAccount
from loyalty.tasks import expire_points, reconcile_points
from tests.factories.loyalty import EarnFactory

pytestmark = pytest.mark.django_db


def test_expire_points_expires_what_is_due_now(member):
    now = timezone.now()
    EarnFactory(member=member, amount=40, now=now - timedelta(days=400), expires_at=now - timedelta(minutes=1))
    EarnFactory(member=member, amount=60, now=now)

    assert expire_points.apply().get() == 1
    assert PointsAccount.objects.get(member=member).balance == 60


def test_reconcile_points_counts_drifting_accounts(member):
    EarnFactory(member=member, amount=40)
    assert reconcile_points.apply().get() == 0

    PointsAccount.objects.filter(member=member).update(balance=41)
    assert reconcile_points.apply().get() == 1
