"""The crisis desk in a real headless Chromium: log in, open the crisis board, watch a 3T clock
count down, approve a compensation and see it delivered; laptop and phone, English and Chinese.
Screenshots are kept under test-artifacts/screenshots/."""

import re

import pytest

from crm.desk import compensation
from crm.desk.services import ticket_open
from loyalty.models import PointsAccount, PointsEntry
from tests.factories import MemberFactory, UserFactory

pytestmark = pytest.mark.browser


def _ticket(title="Cold milk tea in Shanghai stores", severity="critical"):
    members = MemberFactory.create_batch(4)
    operator = UserFactory(username="desk-operator", roles=["Operator"])
    ticket = ticket_open(
        title=title,
        description="Members in three groups say the tea arrived cold.",
        severity=severity,
        source="staff",
        opened_by=operator,
        member_numbers=[m.external_id for m in members],
    )
    return ticket, members, operator


def _seconds(text: str) -> int:
    """'14:53' or '1:02:03' (or with a leading minus) as seconds."""
    sign = -1 if text.startswith("−") else 1
    parts = [int(p) for p in re.findall(r"\d+", text)]
    total = 0
    for part in parts:
        total = total * 60 + part
    return sign * total


@pytest.mark.parametrize("browser_viewport", ["desktop", "phone"])
@pytest.mark.parametrize(
    ("browser_language", "heading", "tell"), [("en", "Crisis board", "Tell"), ("zh-hans", "危机看板", "告知")]
)
def test_the_board_counts_the_clocks_down_live(
    browser_page, login, screenshot, console_errors, browser_viewport, browser_language, heading, tell
):
    ticket, _members, _operator = _ticket()
    page = browser_page
    login(page, "Operator")

    page.goto("/staff/desk/")

    assert page.locator("h1").first.inner_text() == heading
    card = page.locator(f"[data-ticket='{ticket.pk}']")
    assert "Cold milk tea" in card.inner_text()
    clock = card.locator("[data-clock='tell']")
    assert tell in clock.inner_text()
    first = _seconds(clock.locator(".left").inner_text())
    assert 0 < first <= 15 * 60
    page.wait_for_function(
        "([sel, before]) => Number(document.querySelector(sel).getAttribute('data-seconds-left')) < before",
        arg=[f"[data-ticket='{ticket.pk}'] [data-clock='tell'] .left", first],
    )
    assert _seconds(clock.locator(".left").inner_text()) < first
    assert card.locator("[data-clock='trust']").count() == 1
    # The page fits the window: no sideways scrolling on a phone.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    screenshot(page, f"desk-board-{browser_viewport}-{browser_language}")
    assert console_errors(page) == []


@pytest.mark.parametrize("browser_viewport", ["desktop", "phone"])
def test_a_supervisor_approves_compensation_and_sees_it_delivered(
    browser_page, login, screenshot, console_errors, browser_viewport
):
    ticket, members, operator = _ticket(title="Late deliveries", severity="high")
    compensation.compensation_request(ticket=ticket, actor=operator, kind="points", points=300)
    page = browser_page
    supervisor = login(page, "Supervisor")

    page.goto("/staff/desk/")
    page.click(f"[data-ticket='{ticket.pk}'] h2 a")
    page.wait_for_url(f"**/staff/desk/tickets/{ticket.pk}/")
    approve = page.locator("#desk-approve")
    assert "300 points to each of 4 members" in approve.inner_text()
    screenshot(page, f"desk-approve-before-{browser_viewport}")
    with page.expect_navigation():
        approve.locator("button[type=submit]").click()
    assert "Being issued" in page.locator("#desk-compensation").inner_text()
    assert page.locator("#desk-approve").count() == 0  # nothing left to approve: no second click

    # The Celery worker's part, run here in-process: the task body. The page polls while the
    # compensation is being issued and shows the result without a manual reload.
    assert compensation.compensation_deliver(ticket_id=ticket.pk) == 4
    page.locator("#desk-compensation", has_text="Delivered").wait_for()

    assert "4 of 4 members" in page.locator("#desk-compensation").inner_text()
    assert page.locator("[data-clock='trust']").inner_text().startswith("Trust")
    assert "✓" in page.locator("[data-clock='trust'] .left").inner_text()
    timeline = page.locator("#desk-timeline").inner_text()
    assert "Compensation approved" in timeline and "Compensation delivered" in timeline
    assert supervisor.get_username() in timeline
    assert sorted(PointsAccount.objects.filter(member__in=members).values_list("balance", flat=True)) == [300] * 4
    assert PointsEntry.objects.filter(source_ref=f"ticket:{ticket.pk}").count() == 4
    screenshot(page, f"desk-approve-after-{browser_viewport}")
    assert console_errors(page) == []
