"""The browser harness itself: login through the admin form, language, static files, isolation."""

import pytest

from members.models import Member
from tests.factories import MemberFactory

pytestmark = pytest.mark.browser


@pytest.mark.parametrize(("browser_language", "title"), [("en", "Site administration"), ("zh-hans", "站点管理")])
def test_login_by_role_shows_the_admin_in_the_chosen_language(browser_page, login, console_errors, title):
    user = login(browser_page, "Operator")

    assert user.groups.filter(name="Operator").exists()
    assert browser_page.locator("#site-name, h1").first.is_visible()
    assert title in browser_page.content()
    assert console_errors(browser_page) == []


def test_rows_written_by_the_test_are_seen_by_the_live_server(browser_page, login, operator):
    MemberFactory(name="浏览器测试")
    login(browser_page, operator)

    browser_page.goto("/admin/members/member/?q=浏览器")

    assert browser_page.locator("#result_list").get_by_text("浏览器测试").count() == 1
    assert Member.objects.count() == 1  # the previous test's rows are gone, roles are back


def test_static_files_are_served(browser_page):
    response = browser_page.goto("/static/vendor/chartjs/chart.umd.min.js")
    assert response.ok
