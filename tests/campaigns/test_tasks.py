"""The beat tasks are thin: they start due campaigns and dispatch the outbox through the services."""

import pytest
from django.core import mail
from django.utils import timezone

from campaigns.models import CampaignStatus, Delivery, DeliveryStatus
from campaigns.services import campaign_transition
from campaigns.tasks import dispatch_deliveries, start_due_campaigns
from tests.factories.campaigns import CampaignFactory, MessageTemplateFactory, segment_of

pytestmark = pytest.mark.django_db


def test_an_approved_campaign_is_started_and_sent_by_the_beat_tasks(members, operator, supervisor):
    # Transactional, so that the quiet hours of whatever time the suite runs at don't apply.
    campaign = CampaignFactory(segment=segment_of(members), starts_at=timezone.now(), category="transactional")
    MessageTemplateFactory(campaign=campaign)
    campaign_transition(campaign=campaign, action="submit", actor=operator)
    campaign_transition(campaign=campaign, action="approve", actor=supervisor)

    assert start_due_campaigns.apply().get() == 1
    assert dispatch_deliveries.apply().get() == 3

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING
    assert set(Delivery.objects.filter(campaign=campaign).values_list("status", flat=True)) == {DeliveryStatus.SENT}
    assert len(mail.outbox) == 3
    assert dispatch_deliveries.apply().get() == 0
