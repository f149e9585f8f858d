"""Member content in Chromium: the featured page with its poll chart (both languages, laptop and
phone), and a moderator rejecting a flagged submission with a reason through the admin."""

import pytest
from django.utils.translation import gettext, override

from campaigns.ugc import services
from campaigns.ugc.models import Poll, PollOption, SensitiveWord, Submission, SubmissionImage, SubmissionStatus
from tests.browser.test_staff_pages import _no_sideways_scroll
from tests.factories import MemberFactory

pytestmark = pytest.mark.browser

CHART_JS = """() => [...document.querySelectorAll("canvas[id^=poll-chart-]")].map((canvas) => {
  const chart = window.Chart && Chart.getChart(canvas);
  if (!chart) return {drawn: false};
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) painted++;
  const box = canvas.getBoundingClientRect();
  return {drawn: true, painted, labels: chart.data.labels, votes: chart.data.datasets[0].data,
          running: Chart.animator.running(chart), left: box.left, right: box.right, height: box.height};
})"""


def _settled_charts(page):
    previous = None
    for _ in range(100):
        charts = page.evaluate(CHART_JS)
        if charts == previous and all(chart["drawn"] and not chart["running"] for chart in charts):
            return charts
        previous = charts
        page.wait_for_timeout(100)
    raise AssertionError(f"the charts did not settle: {charts}")


@pytest.fixture
def featured_content(live_server, operator):
    member = MemberFactory(name="王小明")
    review = services.submission_create(
        member=member, kind="review", source="shop", title="芒果冰沙测评", text="果肉很多，不会太甜。" * 8, rating=5
    )[0]
    # A photo the live server can serve (the page must not reach outside in tests).
    SubmissionImage.objects.create(submission=review, url=f"{live_server.url}/static/admin/img/icon-yes.svg")
    services.submissions_approve(submission_ids=[review.pk], actor=operator)
    services.submissions_feature(submission_ids=[review.pk], actor=operator)
    poll = Poll.objects.create(title="下一款口味")
    lychee = PollOption.objects.create(poll=poll, label="荔枝", position=1)
    PollOption.objects.create(poll=poll, label="杨梅", position=2, proposer=member)
    services.poll_open(poll=poll)
    for _ in range(3):
        services.poll_vote(poll_id=poll.pk, option_id=lychee.pk, member=MemberFactory(), source="s")
    return review


def test_the_featured_page_shows_content_and_a_live_poll_chart_in_both_languages_and_on_a_phone(
    new_browser_page, login, screenshot, console_errors, operator, featured_content
):
    for language, viewport in (("zh-hans", "desktop"), ("en", "desktop"), ("zh-hans", "phone"), ("en", "phone")):
        page = new_browser_page(language=language, viewport=viewport)
        login(page, operator)

        page.goto("/staff/ugc/featured/")
        charts = _settled_charts(page)
        screenshot(page, f"ugc-featured-{viewport}-{language}")

        with override(language):
            assert page.locator("h1").inner_text() == gettext("Featured member content"), language
        card = page.locator("article.ugc-card")
        assert card.count() == 1 and "芒果冰沙测评" in card.inner_text()
        assert "王**" in card.inner_text() and "王小明" not in page.content()
        assert card.locator("img").evaluate("img => img.complete && img.naturalWidth > 0")
        assert len(charts) == 1, charts
        assert (charts[0]["labels"], charts[0]["votes"]) == (["荔枝", "杨梅"], [3, 0])
        assert charts[0]["painted"] > 500, charts
        assert console_errors(page) == [], (language, viewport)
        if viewport == "phone":
            assert 0 <= charts[0]["left"] and charts[0]["right"] <= 390 and charts[0]["height"] > 100, charts
            _no_sideways_scroll(page)


def test_a_moderator_finds_a_flagged_submission_and_rejects_it_with_a_reason(
    new_browser_page, login, screenshot, console_errors, operator
):
    SensitiveWord.objects.create(word="加微信")
    member = MemberFactory()
    flagged = services.submission_create(member=member, kind="text", source="shop", text="领券请加 微信 abc123")[0]
    services.submission_create(member=member, kind="text", source="shop", text="很好喝")

    page = new_browser_page(language="zh-hans", viewport="phone")
    login(page, operator)
    page.goto("/admin/ugc/submission/?status__exact=pending&flagged__exact=1")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1 and "加微信" in rows.inner_text()

    rows.locator("input.action-select").check()
    with override("zh-hans"):
        page.locator("select[name=action]").select_option(label=gettext("Reject with a reason…"))
    page.locator("button[name=index]").click()
    page.locator("textarea[name=reason]").fill("含联系方式，请删除后重新提交")
    screenshot(page, "ugc-reject-reason-phone-zh-hans")
    page.locator("input[name=apply]").click()
    page.wait_for_url("**/admin/ugc/submission/**")

    flagged.refresh_from_db()
    assert (flagged.status, flagged.reject_reason, flagged.decided_by) == (
        SubmissionStatus.REJECTED,
        "含联系方式，请删除后重新提交",
        operator,
    )
    assert Submission.objects.filter(status=SubmissionStatus.PENDING).count() == 1
    assert console_errors(page) == []
