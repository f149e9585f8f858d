"""The staff pages that exist today, in Chromium: layers dashboard, honor roll, member changelist.

Each test covers both languages (and the phone where it matters) in one go: a browser test
costs a database flush, so fewer tests keep the suite quick.
"""

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.translation import gettext, override

from loyalty.models import Badge
from loyalty.services import badge_award
from members.models import Channel
from members.models_layers import LifecycleStage, ValueLayer
from members.services.layers import layers_recompute_full
from tests.factories import MemberFactory
from tests.factories.layers import ingest, purchases

pytestmark = pytest.mark.browser

DAY = timedelta(days=1)
CHART_IDS = ("chart-layers", "chart-stages", "chart-flows")

# For every chart: does Chart.js hold it, with what data, and did it paint pixels on the canvas?
CHARTS_JS = """(ids) => ids.map((id) => {
  const canvas = document.getElementById(id);
  const chart = window.Chart && Chart.getChart(canvas);
  if (!chart) return {id, drawn: false};
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) painted++;
  const box = canvas.getBoundingClientRect();
  return {
    id, drawn: true, painted, labels: chart.data.labels.length,
    datasets: chart.data.datasets.map((d) => d.label),
    points: chart.data.datasets.reduce((n, d) => n + d.data.filter((v) => v > 0).length, 0),
    left: box.left, right: box.right, width: box.width, height: box.height,
  };
})"""

# Widest element sticking out of the window, if any (the page should not scroll sideways).
OVERFLOW_JS = """() => {
  const width = document.documentElement.clientWidth;
  const wide = [...document.querySelectorAll("body *")].filter((el) => {
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.right > width + 1 && getComputedStyle(el).position !== "fixed";
  });
  return {width, scrollWidth: document.documentElement.scrollWidth,
          wide: wide.slice(0, 5).map((el) => el.tagName + "#" + el.id + "." + el.className)};
}"""


# Sizes of the chart canvases, and whether Chart.js is still animating any of them.
CHARTS_MOVING_JS = """(ids) => ids.map((id) => {
  const canvas = document.getElementById(id);
  const chart = window.Chart && Chart.getChart(canvas);
  return chart ? [canvas.clientWidth, canvas.clientHeight, Chart.animator.running(chart)] : null;
})"""


def _wait_for_charts(page):
    """Until every chart exists, has finished its animation and keeps its size between polls."""
    previous = None
    for _ in range(100):
        state = page.evaluate(CHARTS_MOVING_JS, list(CHART_IDS))
        if state == previous and all(chart and not chart[2] for chart in state):
            return
        previous = state
        page.wait_for_timeout(100)
    raise AssertionError(f"the charts did not settle: {state}")


def _no_sideways_scroll(page):
    """The page fits its window (a wide table may scroll inside its own box)."""
    overflow = page.evaluate(OVERFLOW_JS)
    assert overflow["scrollWidth"] <= overflow["width"], overflow


@pytest.fixture
def layer_history():
    """Snapshots on two days and stage changes, made by the real recompute."""
    now = timezone.now()
    members = MemberFactory.create_batch(3, joined_at=now - 100 * DAY)
    ingest(e for m in members for e in purchases(m, now=now, days_ago=[1.2]))
    layers_recompute_full(now=now - 25 * DAY)
    layers_recompute_full(now=now)


def test_layers_dashboard_draws_its_charts_in_both_languages_and_on_a_phone(
    new_browser_page, login, screenshot, console_errors, operator, layer_history
):
    for language, viewport in (("zh-hans", "desktop"), ("en", "desktop"), ("zh-hans", "phone"), ("en", "phone")):
        page = new_browser_page(language=language, viewport=viewport)
        login(page, operator)

        page.goto("/staff/members/layers/")
        _wait_for_charts(page)
        screenshot(page, f"layers-dashboard-{viewport}-{language}")

        with override(language):
            title = gettext("Layers and lifecycle stages")
            layer_names = [str(label) for label in ValueLayer.labels]
            stage_names = [str(label) for label in LifecycleStage.labels]
        assert page.locator("h1").inner_text() == title, language
        charts = {chart["id"]: chart for chart in page.evaluate(CHARTS_JS, list(CHART_IDS))}
        for chart in charts.values():
            assert chart["drawn"] and chart["painted"] > 1000 and chart["labels"] >= 1, (language, viewport, chart)
        # The flows chart plots only the watched flows (falling out of the active stages); the
        # members here only went from silent to paying, which the table of the week lists.
        assert charts["chart-layers"]["points"] >= 1 and charts["chart-stages"]["points"] >= 1, charts
        assert page.locator(".layer-chart table tbody tr").count() >= 1
        assert charts["chart-layers"]["datasets"] == layer_names, language
        assert charts["chart-stages"]["datasets"] == stage_names, language
        assert console_errors(page) == [], (language, viewport)
        if viewport == "phone":
            for chart in charts.values():
                assert 0 <= chart["left"] and chart["right"] <= 390 and chart["height"] > 100, chart
            _no_sideways_scroll(page)


def test_honor_roll_shows_masked_holders_in_both_languages_and_fits_a_phone(
    new_browser_page, screenshot, console_errors, supervisor
):
    officer = Badge.objects.get(code="chief-experience-officer")
    badge_award(member=MemberFactory(name="王小明"), badge=officer, actor=supervisor, reason="测评")

    for language, viewport in (("zh-hans", "phone"), ("en", "desktop")):
        page = new_browser_page(language=language, viewport=viewport)

        page.goto("/honors/")  # public: no login
        screenshot(page, f"honor-roll-{viewport}-{language}")

        with override(language):
            assert page.locator("h1").inner_text() == gettext("Honor roll")
        assert page.locator("html").get_attribute("lang") == language
        section = page.locator("section", has_text=officer.name)
        assert section.locator("ul.holders li").all_inner_texts() == ["王**"]
        assert "王小明" not in page.content()
        assert console_errors(page) == [], language
        if viewport == "phone":
            _no_sideways_scroll(page)


def test_member_changelist_filters_by_channel_in_both_languages_and_on_a_phone(
    new_browser_page, login, screenshot, console_errors, operator
):
    MemberFactory(name="微信会员甲", channel=Channel.WECOM)
    MemberFactory(name="应用会员乙", channel=Channel.APP)

    for language, viewport in (("zh-hans", "desktop"), ("en", "phone")):
        page = new_browser_page(language=language, viewport=viewport)
        login(page, operator)
        page.goto("/admin/members/member/")
        with override(language):
            channel_label = str(Channel.WECOM.label)

        # Pick the filter the way staff do: the channel choice in the filter panel.
        page.locator("#changelist-filter").get_by_role("link", name=channel_label, exact=True).click()
        page.wait_for_url("**channel__exact=wecom**")
        screenshot(page, f"member-changelist-channel-filter-{viewport}-{language}")

        rows = page.locator("#result_list tbody tr").all_inner_texts()
        assert len(rows) == 1 and "微信会员甲" in rows[0], (language, rows)
        selected = page.locator("#changelist-filter li.selected").all_inner_texts()
        assert channel_label in selected, (language, selected)
        name = page.locator("#result_list tbody").get_by_text("微信会员甲")
        assert name.evaluate("el => el.getClientRects().length") == 1, "the name wraps"
        if viewport == "phone":
            _no_sideways_scroll(page)  # the table scrolls inside its own box
        assert console_errors(page) == [], (language, viewport)
