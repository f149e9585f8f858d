"""The campaign admin: drafts with their messages, buttons per role, a preview, the outbox."""

import pytest
from django.urls import reverse

from campaigns.models import Campaign, CampaignStatus, CampaignTransition, MessageTemplate
from campaigns.outbox import deliveries_plan
from tests.factories import MemberFactory
from tests.factories.campaigns import CampaignFactory, MessageTemplateFactory, running_campaign, segment_of

pytestmark = pytest.mark.django_db

ADD = reverse("admin:campaigns_campaign_add")
OUTBOX = reverse("admin:campaigns_delivery_changelist")


def _change(campaign):
    return reverse("admin:campaigns_campaign_change", args=[campaign.pk])


def _transition(campaign, action):
    return reverse("admin:campaigns_campaign_transition", args=[campaign.pk, action])


def _form(segment, **overrides):
    data = {
        "name": "春季新品",
        "kind": "broadcast",
        "category": "promotional",
        "segment": segment.pk,
        "member_numbers": "",
        "starts_at_0": "2026-03-16",
        "starts_at_1": "09:00:00",
        "ends_at_0": "",
        "ends_at_1": "",
        "send_time": "10:00",
        "channel": "sms",
        "language": "zh-hans",
        "offer_points": "100",
        "coupon_batch": "",
        "offer_multiplier": "1",
        "holdout_percent": "10",
        "conversion_days": "7",
        "steps-TOTAL_FORMS": "0",
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "1000",
        "variants-TOTAL_FORMS": "2",
        "variants-INITIAL_FORMS": "0",
        "variants-MIN_NUM_FORMS": "0",
        "variants-MAX_NUM_FORMS": "1000",
        "variants-0-name": "A",
        "variants-0-weight": "1",
        "variants-1-name": "B",
        "variants-1-weight": "1",
        "templates-TOTAL_FORMS": "1",
        "templates-INITIAL_FORMS": "0",
        "templates-MIN_NUM_FORMS": "0",
        "templates-MAX_NUM_FORMS": "1000",
        "templates-0-variant": "",
        "templates-0-channel": "sms",
        "templates-0-language": "zh-hans",
        "templates-0-subject": "",
        "templates-0-body": "亲爱的{{ member.name }}，送您{{ offer.points }}积分",
        "transitions-TOTAL_FORMS": "0",
        "transitions-INITIAL_FORMS": "0",
        "transitions-MIN_NUM_FORMS": "0",
        "transitions-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    return data


def test_an_operator_drafts_a_campaign_with_its_message(client, operator, members):
    client.force_login(operator)

    response = client.post(ADD, _form(segment_of(members)))

    assert response.status_code == 302, response.context["errors"] if response.context else response
    campaign = Campaign.objects.get(created_by=operator)
    assert (campaign.status, campaign.created_by) == (CampaignStatus.DRAFT, operator)
    assert MessageTemplate.objects.get(campaign=campaign).channel == "sms"
    assert campaign.holdout_percent == 10
    assert list(campaign.variants.values_list("name", flat=True)) == ["A", "B"]


def test_a_template_error_is_shown_when_saving_not_at_send_time(client, operator, members):
    client.force_login(operator)

    response = client.post(ADD, _form(segment_of(members), **{"templates-0-body": "亲爱的{{ member.nmae }}"}))

    assert response.status_code == 200
    assert "Unknown variable: member.nmae" in response.text
    assert not Campaign.objects.filter(created_by=operator).exists()


@pytest.mark.parametrize(
    ("role", "buttons"),
    [("operator", {"submit"}), ("supervisor", {"submit", "cancel"}), ("auditor", set())],
)
def test_buttons_follow_the_role(client, request, role, buttons, members):
    client.force_login(request.getfixturevalue(role))
    campaign = CampaignFactory(segment=segment_of(members))

    page = client.get(_change(campaign))

    assert page.status_code == 200
    shown = {
        action for action in ("submit", "approve", "cancel", "pause") if _transition(campaign, action) in page.text
    }
    assert shown == buttons


def test_submit_and_approve_through_the_buttons(client, operator, supervisor, members):
    campaign = CampaignFactory(segment=segment_of(members))
    MessageTemplateFactory(campaign=campaign)
    client.force_login(operator)
    assert client.post(_transition(campaign, "submit"), {"note": "ready"}).status_code == 302
    assert client.post(_transition(campaign, "approve")).status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.AWAITING_APPROVAL  # refused: operators don't approve

    client.force_login(supervisor)
    client.post(_transition(campaign, "approve"))

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SCHEDULED
    assert CampaignTransition.objects.get(campaign=campaign, action="submit").note == "ready"
    # No longer a draft: the page is read-only.
    assert 'name="_save"' not in client.get(_change(campaign)).text


def test_a_transition_needs_a_post(client, supervisor, members):
    client.force_login(supervisor)
    campaign = CampaignFactory(segment=segment_of(members))

    assert client.get(_transition(campaign, "cancel")).status_code == 405


def test_the_preview_renders_for_a_chosen_member_with_a_masked_phone(client, operator, members):
    client.force_login(operator)
    chosen = MemberFactory(name="王小明", phone="+8613912345678")
    campaign = CampaignFactory(segment=segment_of(members), channel="sms")
    MessageTemplateFactory(campaign=campaign, body="亲爱的{{ member.name }}，好久不见")

    page = client.get(reverse("admin:campaigns_campaign_preview", args=[campaign.pk]), {"member": chosen.external_id})

    assert page.status_code == 200
    assert "亲爱的王小明，好久不见" in page.text
    assert "139****5678" in page.text
    assert "13912345678" not in page.text


def test_the_outbox_lists_deliveries_with_filters(client, auditor, members, now, django_assert_max_num_queries):
    deliveries_plan(campaign=running_campaign(members), now=now)
    client.force_login(auditor)

    with django_assert_max_num_queries(12):
        page = client.get(OUTBOX, {"status__exact": "queued"})

    assert page.status_code == 200
    assert page.context["cl"].result_count == 3


def test_the_campaign_page_shows_the_outbox_counts_and_results_per_arm(client, auditor, now):
    members = [MemberFactory(email=f"adm{i}@example.com") for i in range(20)]
    campaign = running_campaign(members, holdout_percent=50)
    deliveries_plan(campaign=campaign, now=now)
    client.force_login(auditor)

    page = client.get(_change(campaign))

    assert page.status_code == 200
    assert "Control group (holdout)" in page.text  # the skip reason, counted
    assert "control group" in page.text  # the results table
