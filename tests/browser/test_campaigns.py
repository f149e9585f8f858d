"""Campaign pages in Chromium: the funnel per variant on a campaign and the recall results, drawn
by Chart.js, in both languages, on a laptop and a phone."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.translation import gettext, override

from campaigns.models import CampaignVariant, RecallPlaybook
from campaigns.outbox import deliveries_dispatch, deliveries_plan
from campaigns.recall import recall_run
from members.models_layers import LifecycleStage, MemberScore
from tests.browser.test_staff_pages import CHARTS_JS, CHARTS_MOVING_JS, _no_sideways_scroll
from tests.factories import MemberFactory
from tests.factories.campaigns import running_campaign

pytestmark = pytest.mark.browser


def _wait_for(page, chart_id):
    previous = None
    for _ in range(100):
        state = page.evaluate(CHARTS_MOVING_JS, [chart_id])
        if state == previous and state[0] and not state[0][2]:
            return
        previous = state
        page.wait_for_timeout(100)
    raise AssertionError(f"the chart did not settle: {state}")


def test_campaign_funnel_and_recall_results_are_charted(
    new_browser_page, login, screenshot, console_errors, supervisor
):
    now = timezone.now().replace(hour=3, minute=0)  # 11:00 in Shanghai: outside the quiet hours
    members = [MemberFactory(email=f"b{i}@example.com") for i in range(12)]
    campaign = running_campaign(members, holdout_percent=25, name="春季新品")
    CampaignVariant.objects.create(campaign=campaign, name="A")
    CampaignVariant.objects.create(campaign=campaign, name="B")
    deliveries_plan(campaign=campaign, now=now)
    deliveries_dispatch(now=now)
    playbook = RecallPlaybook.objects.select_related("campaign").get(reason="unknown")
    playbook.campaign.status, playbook.campaign.channel = "running", "email"
    playbook.campaign.save()
    for member in members:
        MemberScore.objects.create(member=member, lifecycle_stage=LifecycleStage.AT_RISK)
    recall_run(now=now - timedelta(days=1))

    for language, viewport in (("zh-hans", "phone"), ("en", "desktop")):
        page = new_browser_page(language=language, viewport=viewport)
        login(page, supervisor)

        page.goto(f"/admin/campaigns/campaign/{campaign.pk}/change/")
        _wait_for(page, "campaign-funnel-chart")
        screenshot(page, f"campaign-funnel-{viewport}-{language}")
        [chart] = page.evaluate(CHARTS_JS, ["campaign-funnel-chart"])
        assert chart["drawn"] and chart["painted"] > 1000, chart
        with override(language):
            assert chart["datasets"] == [gettext("control group"), "A", "B"]
        assert chart["labels"] == 6

        page.goto("/staff/campaigns/recall/")
        _wait_for(page, "recall-chart")
        screenshot(page, f"recall-results-{viewport}-{language}")
        [chart] = page.evaluate(CHARTS_JS, ["recall-chart"])
        assert chart["drawn"] and chart["labels"] == 1, chart
        with override(language):
            assert page.locator("h1").inner_text() == gettext("Recall results")
        assert page.locator("#recall-results tbody tr").count() == 1
        if viewport == "phone":
            _no_sideways_scroll(page)
        assert console_errors(page) == [], (language, viewport)
