"""Factories for campaigns, their messages and audiences."""

from datetime import datetime
from zoneinfo import ZoneInfo

import factory
from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus, MessageTemplate
from members.models_layers import SegmentMember
from tests.factories.layers import SegmentFactory

SHANGHAI = ZoneInfo("Asia/Shanghai")


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Campaign

    name = factory.Sequence(lambda n: f"campaign-{n}")
    channel = "email"
    starts_at = factory.LazyFunction(lambda: datetime(2026, 3, 16, 9, 0, tzinfo=SHANGHAI))


class MessageTemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MessageTemplate

    campaign = factory.SubFactory(CampaignFactory)
    channel = factory.LazyAttribute(lambda t: t.campaign.channel)
    language = factory.LazyAttribute(lambda t: t.campaign.language)
    subject = "{{ campaign.name }}"
    body = "亲爱的{{ member.name }}，送您{{ offer.points }}积分"


def segment_of(members, **kwargs):
    """A segment whose materialized membership is exactly `members`."""
    segment = SegmentFactory(**kwargs)
    SegmentMember.objects.bulk_create(
        [SegmentMember(segment=segment, member=m, added_at=timezone.now()) for m in members]
    )
    return segment


def running_campaign(members, *, body: str = "亲爱的{{ member.name }}，新品上市", **kwargs) -> Campaign:
    """A running campaign whose audience is `members` (set directly: for outbox tests)."""
    kwargs.setdefault("segment", segment_of(members))
    kwargs.setdefault("status", CampaignStatus.RUNNING)
    campaign = CampaignFactory(**kwargs)
    MessageTemplateFactory(campaign=campaign, body=body)
    return campaign
