"""Staff pages: the funnel per variant on a campaign, the recall results, the outbox filters and
the channel fallback actions."""

from datetime import timedelta

import pytest
from django.urls import reverse

from campaigns.models import CampaignVariant, ChannelConfig, RecallPlaybook
from campaigns.outbox import deliveries_dispatch, deliveries_plan
from campaigns.recall import recall_run
from members.models_layers import LifecycleStage, MemberScore
from tests.factories import MemberFactory
from tests.factories.campaigns import running_campaign

pytestmark = pytest.mark.django_db
RECALL = reverse("campaigns:recall_report")


def test_the_campaign_page_charts_the_funnel_per_variant(client, supervisor, members, now):
    campaign = running_campaign(members, holdout_percent=30)
    CampaignVariant.objects.create(campaign=campaign, name="A")
    deliveries_plan(campaign=campaign, now=now)
    deliveries_dispatch(now=now)
    client.force_login(supervisor)

    response = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))

    assert response.status_code == 200
    funnel = response.context["funnel"]
    assert funnel["labels"][:2] == ["members", "sent"]
    totals = {d["label"]: d["data"] for d in funnel["datasets"]}
    assert sum(data[0] for data in totals.values()) == 3  # every member in one arm
    assert 'id="campaign-funnel-data"' in response.text
    assert "vendor/chartjs/chart.umd.min.js" in response.text


def test_the_recall_page_shows_each_playbook_against_its_control_group(client, supervisor, now):
    playbook = RecallPlaybook.objects.select_related("campaign").get(reason="unknown")
    playbook.campaign.status, playbook.campaign.channel = "running", "email"
    playbook.campaign.save()
    for i in range(20):
        MemberScore.objects.create(
            member=MemberFactory(email=f"r{i}@example.com"), lifecycle_stage=LifecycleStage.AT_RISK
        )
    recall_run(now=now - timedelta(days=1))
    client.force_login(supervisor)

    response = client.get(RECALL)

    assert response.status_code == 200
    chart = response.context["chart_data"]
    assert chart["labels"] == ["Unknown"]
    assert [len(d["data"]) for d in chart["datasets"]] == [1, 1]
    assert 'id="recall-results"' in response.text


def test_the_recall_page_is_for_staff_who_may_see_campaigns(client, members):
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="clerk", is_staff=True))
    assert client.get(RECALL).status_code == 403
    client.logout()
    assert client.get(RECALL).status_code == 302  # to the login


def test_the_outbox_filters_by_status_reason_and_channel_used(client, supervisor, members, now):
    deliveries_plan(campaign=running_campaign(members), now=now)
    client.force_login(supervisor)
    outbox = reverse("admin:campaigns_delivery_changelist")

    for query in ("status__exact=queued", "skip_reason__exact=daily_cap", "sent_via__exact=sms"):
        assert client.get(f"{outbox}?{query}").status_code == 200


def test_staff_switch_a_channels_fallback_on_and_off_from_the_channel_list(client, supervisor):
    ChannelConfig.objects.filter(channel="wecom").update(fallback_channel="sms")
    wecom = ChannelConfig.objects.get(channel="wecom")
    client.force_login(supervisor)
    changelist = reverse("admin:campaigns_channelconfig_changelist")

    client.post(changelist, {"action": "fallback_on", "_selected_action": [wecom.pk]})
    wecom.refresh_from_db()
    assert wecom.fallback_active

    client.post(changelist, {"action": "fallback_off", "_selected_action": [wecom.pk]})
    wecom.refresh_from_db()
    assert not wecom.fallback_active
