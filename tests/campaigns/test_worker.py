"""End to end through a real `celery -A crm worker` on Redis: the journey task plans a welcome
message and its gift, the dispatch task sends it; a paused campaign's messages stay unsent."""

from datetime import time, timedelta

import pytest
from django.utils import timezone

from campaigns.models import (
    CampaignKind,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    InAppMessage,
    JourneyStep,
    OutboxSettings,
)
from campaigns.outbox import deliveries_plan
from campaigns.services import campaigns_pause_promotions, campaigns_resume
from campaigns.tasks import dispatch_deliveries, run_journeys
from loyalty.models import PointsAccount
from tests.crm.test_celery_worker import _wait_until, worker  # noqa: F401  (the fixture)
from tests.factories import MemberFactory
from tests.factories.campaigns import CampaignFactory, MessageTemplateFactory, running_campaign

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.celery_worker]


@pytest.mark.django_db(transaction=True)
def test_a_worker_runs_the_welcome_journey_and_dispatches_it(worker):  # noqa: F811
    now = timezone.now()
    campaign = CampaignFactory(
        kind=CampaignKind.WELCOME,
        status=CampaignStatus.RUNNING,
        starts_at=now - timedelta(days=1),
        channel="in_app",
        category="transactional",
    )
    JourneyStep.objects.create(campaign=campaign, key="day0", value=0, offer_points=30)
    MessageTemplateFactory(campaign=campaign, step="day0", subject="欢迎", body="欢迎{{ member.name }}")
    member = MemberFactory(joined_at=now - timedelta(minutes=5))

    run_journeys.apply_async(queue=worker.queue)
    _wait_until(lambda: Delivery.objects.filter(campaign=campaign, member=member).exists(), worker)
    dispatch_deliveries.apply_async(queue=worker.queue)
    _wait_until(lambda: InAppMessage.objects.filter(member=member).exists(), worker)

    assert InAppMessage.objects.get(member=member).body == f"欢迎{member.name}"
    assert PointsAccount.objects.get(member=member).balance == 30
    assert Delivery.objects.get(campaign=campaign, member=member).status == DeliveryStatus.SENT
    _wait_until(lambda: "campaigns.tasks.dispatch_deliveries" in worker.output(), worker)


@pytest.mark.django_db(transaction=True)
def test_a_paused_campaign_sends_nothing_through_the_worker_until_resumed(worker):  # noqa: F811
    # No quiet hours (start = end), so that the test does not depend on the time of day it runs at.
    OutboxSettings.objects.filter(pk=1).update(quiet_start=time(0), quiet_end=time(0))
    campaign = running_campaign([MemberFactory() for _ in range(3)], channel="in_app", category="promotional")
    deliveries_plan(campaign=campaign, now=timezone.now())
    paused = campaigns_pause_promotions(reason="group exits above 8%")

    dispatch_deliveries.apply_async(queue=worker.queue)
    _wait_until(lambda: worker.output().count("succeeded") >= 1, worker)
    assert not InAppMessage.objects.exists()
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.QUEUED}

    assert campaigns_resume(campaign_ids=paused, reason="exits back under 8%") == [campaign.pk]
    dispatch_deliveries.apply_async(queue=worker.queue)
    _wait_until(lambda: InAppMessage.objects.count() == 3, worker)
