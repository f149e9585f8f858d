"""The browser harness itself: login by role through the admin form, language choice, screenshots."""

import pytest
from django.db import connection
from django.utils.translation import gettext, override

pytestmark = pytest.mark.browser


def test_login_by_role_in_either_language_and_a_screenshot(new_browser_page, login, screenshot, console_errors):
    # While Playwright's loop runs, the test must still hold the connection the test database
    # setup serialized its contents on, or serialized rollback silently reloads nothing.
    assert getattr(connection, "_test_serialized_contents", None)
    for language in ("zh-hans", "en"):
        page = new_browser_page(language=language)

        user = login(page, "Operator")

        assert user.groups.filter(name="Operator").exists()  # the migrated roles are there
        with override(language):
            assert page.locator("#content h1").inner_text() == gettext("Site administration")
        assert console_errors(page) == []
        path = screenshot(page, f"harness-admin-index-{language}")
        assert path.read_bytes().startswith(b"\x89PNG")
