"""The brakes the health alarms pull: pausing every promotion (a paused campaign sends nothing
until resumed, also mid-batch) and falling back to another channel."""

import json

import pytest
from django.core import mail
from django.db.models import F

from campaigns.channels import sign
from campaigns.models import (
    Campaign,
    CampaignStatus,
    CampaignTransition,
    ChannelConfig,
    Delivery,
    DeliveryStatus,
    MessageCategory,
    SkipReason,
)
from campaigns.outbox import (
    deliveries_claim,
    deliveries_dispatch,
    deliveries_plan,
    deliveries_send,
    delivery_receipt_record,
)
from campaigns.services import (
    campaign_transition,
    campaigns_pause_promotions,
    campaigns_resume,
    campaigns_start_due,
    channel_fallback_activate,
    channel_fallback_clear,
)
from crm.core.exceptions import ApplicationError
from tests.campaigns.test_dispatch import SECRET, Gateway, _configure
from tests.factories import MemberFactory
from tests.factories.campaigns import CampaignFactory, MessageTemplateFactory, running_campaign, segment_of

pytestmark = pytest.mark.django_db


def test_pausing_promotions_pauses_running_and_scheduled_promotions_only(members, now):
    running = running_campaign(members)
    scheduled = running_campaign(members, status=CampaignStatus.SCHEDULED)
    notice = running_campaign(members, category=MessageCategory.TRANSACTIONAL)
    draft = running_campaign(members, status=CampaignStatus.DRAFT)

    paused = campaigns_pause_promotions(reason="group exit rate 9.5% > 8%")

    assert paused == [running.pk, scheduled.pk]
    statuses = dict(Campaign.objects.filter(kind="broadcast").values_list("pk", "status"))
    assert statuses == {
        running.pk: CampaignStatus.PAUSED,
        scheduled.pk: CampaignStatus.PAUSED,
        notice.pk: CampaignStatus.RUNNING,
        draft.pk: CampaignStatus.DRAFT,
    }
    move = CampaignTransition.objects.get(campaign=running, action="pause")
    assert (move.actor, move.note) == (None, "group exit rate 9.5% > 8%")


def test_a_reason_is_required():
    with pytest.raises(ApplicationError):
        campaigns_pause_promotions(reason="  ")


def test_a_paused_campaign_sends_nothing_until_resumed(members, now):
    campaign = running_campaign(members)
    deliveries_plan(campaign=campaign, now=now)
    paused = campaigns_pause_promotions(reason="alarm")

    assert deliveries_dispatch(now=now).sent == 0
    assert mail.outbox == []
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.QUEUED}

    assert campaigns_resume(campaign_ids=paused, reason="alarm cleared") == [campaign.pk]
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING
    assert deliveries_dispatch(now=now).sent == 3
    assert len(mail.outbox) == 3


def test_a_batch_claimed_before_the_pause_goes_back_to_the_queue_unsent(members, now):
    campaign = running_campaign(members)
    deliveries_plan(campaign=campaign, now=now)
    token = deliveries_claim(limit=10, now=now)  # a worker has claimed the batch…
    campaigns_pause_promotions(reason="alarm")  # …when the alarm fires

    result = deliveries_send(token=token, now=now)

    assert (result.sent, result.held) == (0, 3)
    assert mail.outbox == []
    rows = Delivery.objects.filter(campaign=campaign)
    assert set(rows.values_list("status", "attempts")) == {(DeliveryStatus.QUEUED, 0)}


def test_resume_leaves_campaigns_that_staff_cancelled_meanwhile(members, supervisor):
    first, second = running_campaign(members), running_campaign(members)
    paused = campaigns_pause_promotions(reason="alarm")
    campaign_transition(campaign=second, action="cancel", actor=supervisor)

    assert campaigns_resume(campaign_ids=paused, reason="cleared") == [first.pk]
    second.refresh_from_db()
    assert second.status == CampaignStatus.CANCELLED


def test_a_campaign_paused_before_it_started_is_planned_when_resumed(members, now):
    campaign = CampaignFactory(segment=segment_of(members), status=CampaignStatus.SCHEDULED, starts_at=now)
    MessageTemplateFactory(campaign=campaign)
    paused = campaigns_pause_promotions(reason="alarm")
    assert campaigns_start_due(now=now) == 0

    campaigns_resume(campaign_ids=paused, reason="cleared")
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SCHEDULED
    assert campaigns_start_due(now=now) == 1
    assert Delivery.objects.filter(campaign=campaign, status=DeliveryStatus.QUEUED).count() == 3


# Channel fallback ---------------------------------------------------------------------------


def test_without_a_fallback_channel_nothing_changes():
    assert channel_fallback_activate(channel="wecom", reason="platform rule change") is None
    assert not ChannelConfig.objects.get(channel="wecom").fallback_active


def test_while_the_fallback_is_on_waiting_messages_go_through_it_and_the_delivery_says_so(now):
    reachable = MemberFactory(phone="+8613900000001", wecom_opt_out=False)
    opted_out = MemberFactory(phone="+8613900000002", sms_opt_out=True)
    no_phone = MemberFactory(phone=None)
    campaign = running_campaign([reachable, opted_out, no_phone], channel="wecom")
    MessageTemplateFactory(campaign=campaign, channel="sms", body="【品牌】{{ member.name }}，新品上市")
    deliveries_plan(campaign=campaign, now=now)
    ChannelConfig.objects.filter(channel="wecom").update(enabled=False, fallback_channel="sms")

    with Gateway() as gateway:
        _configure("sms", gateway.url)
        ChannelConfig.objects.filter(channel="wecom").update(enabled=False)  # the platform is gone
        assert deliveries_dispatch(now=now).handled == 0  # waiting, no fallback yet

        assert channel_fallback_activate(channel="wecom", reason="platform rule change") == "sms"
        result = deliveries_dispatch(now=now)

    assert (result.sent, result.skipped) == (1, 2)
    payload = gateway.requests[0][0]
    assert payload["channel"] == "sms"
    assert payload["phone"] == "+8613900000001"
    assert payload["text"] == f"【品牌】{reachable.name}，新品上市"  # the SMS template, not the WeCom one
    sent = Delivery.objects.get(member=reachable)
    assert (sent.channel, sent.sent_via, sent.status) == ("wecom", "sms", DeliveryStatus.SENT)
    assert dict(Delivery.objects.filter(status=DeliveryStatus.SKIPPED).values_list("member", "skip_reason")) == {
        opted_out.pk: SkipReason.OPT_OUT,
        no_phone.pk: SkipReason.NO_ADDRESS,
    }
    # The SMS gateway's receipt finds the message it sent.
    body = json.dumps({"delivery_id": sent.pk, "status": "delivered"}).encode()
    delivery_receipt_record(channel="sms", body=body, signature=sign(SECRET, body))
    sent.refresh_from_db()
    assert sent.status == DeliveryStatus.DELIVERED


def test_without_its_own_template_the_fallback_sends_the_campaigns_message(members, now):
    campaign = running_campaign(members, channel="wecom", body="{{ member.name }}，你好")
    deliveries_plan(campaign=campaign, now=now)
    ChannelConfig.objects.filter(channel="wecom").update(fallback_channel="in_app")

    channel_fallback_activate(channel="wecom", reason="outage")
    assert deliveries_dispatch(now=now).sent == 3

    sent = Delivery.objects.filter(campaign=campaign)
    assert set(sent.values_list("sent_via", flat=True)) == {"in_app"}
    assert sorted(m.in_app_message.body for m in sent) == sorted(f"{m.name}，你好" for m in members)


def test_after_clearing_the_fallback_messages_go_through_their_own_channel_again(members, now):
    ChannelConfig.objects.filter(channel="email").update(fallback_channel="in_app")
    channel_fallback_activate(channel="email", reason="smtp down")
    channel_fallback_clear(channel="email")
    campaign = running_campaign(members, channel="email")
    deliveries_plan(campaign=campaign, now=now)

    assert deliveries_dispatch(now=now).sent == 3
    assert len(mail.outbox) == 3
    assert set(Delivery.objects.values_list("sent_via", flat=True)) == {""}
    config = ChannelConfig.objects.get(channel="email")
    assert (config.fallback_active, config.fallback_since) == (False, None)


def test_a_channel_cannot_fall_back_to_itself():
    from django.db import IntegrityError

    with pytest.raises(IntegrityError):
        ChannelConfig.objects.filter(channel="sms").update(fallback_channel=F("channel"))
