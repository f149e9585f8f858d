"""Browser tests: Debian's headless Chromium, driven by Playwright, against pytest-django's live_server.

Fixtures:

- ``browser_page``: a Playwright ``Page`` in a fresh browser context (cookies, storage) per
  test, ``page.goto("/...")`` resolves against the live server. Its language comes from the
  ``browser_language`` fixture ("en" unless a test parametrizes it: ``@pytest.mark.parametrize(
  "browser_language", ["zh-hans", "en"])``) and its window from ``browser_viewport`` ("desktop"
  1280x800 or "phone" 390x844 touch, parametrized the same way).
- ``new_browser_page(language=..., viewport=...)``: more pages in the same test.
- ``login(page, user_or_role)``: logs in through /admin/login/. A user gets the suite's known
  password set if it has another; a role name ("Operator", "Supervisor", "Auditor") creates a
  staff user in that role group. Returns the user.
- ``screenshot(page, name)``: a full-page PNG in ``test-artifacts/screenshots/<name>.png``.
- ``console_errors(page)``: the console errors the page logged so far (failed loads among them,
  except the browser's own /favicon.ico request). Uncaught
  JavaScript exceptions always fail the test (at teardown).

One Chromium serves every test of this package. While it runs, Playwright's event loop is
registered as running in the main thread, which trips Django's async-safety check on every ORM
call the test makes; DJANGO_ALLOW_ASYNC_UNSAFE is therefore set for exactly that span and
removed when the package's last test is done. The running loop also makes Django look up
connections in context-local storage; the fixture puts the thread's own connection objects
there, so tests and the database fixtures keep using one connection per database.

The live server needs a transactional database; every browser test also gets serialized
rollback, so the rows data migrations installed (roles, settings, tiers) are back for the tests
that follow.

No Chromium at /usr/bin/chromium (or CRM_CHROMIUM): the tests skip, or fail when CI or
CRM_BROWSER_TESTS=required is set (.ci/run sets the latter).
"""

import os
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections

CHROMIUM = Path(os.environ.get("CRM_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's password
VIEWPORTS = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "is_mobile": True,
        "has_touch": True,
        "device_scale_factor": 2,
    },
}
LOCALES = {"zh-hans": "zh-CN", "en": "en-US"}
ROLES = ("Operator", "Supervisor", "Auditor")
TIMEOUT_MS = 20_000


def _unavailable(reason):
    if os.environ.get("CI") or os.environ.get("CRM_BROWSER_TESTS") == "required":
        pytest.fail(f"browser tests are required here, but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="package")
def _chromium():
    """One headless Chromium for the package; Django's async-safety check is off while it runs."""
    if not CHROMIUM.exists():
        _unavailable(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -r requirements-dev.txt)")

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    wrappers = {alias: connections[alias] for alias in connections}
    try:
        with sync_playwright() as playwright:
            # With an event loop running, Django keeps this thread's connections in
            # context-local storage, so the test would get a second connection that lacks what
            # the test database setup left on the first (the serialized contents that serialized
            # rollback reloads). Hand the same connection objects to that storage.
            for alias, wrapper in wrappers.items():
                connections[alias] = wrapper
            try:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
            except Error as exc:
                _unavailable(f"Chromium at {CHROMIUM} does not start: {exc.message.splitlines()[0]}")
            yield browser
            browser.close()
    finally:
        if previous is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def browser_language():
    return "en"


@pytest.fixture
def browser_viewport():
    return "desktop"


@pytest.fixture
def new_browser_page(_chromium, live_server, transactional_db, django_db_serialized_rollback):
    """Opens pages, each in its own context: new_browser_page(language="zh-hans", viewport="phone")."""
    contexts, uncaught = [], []

    def open_page(*, language="en", viewport="desktop"):
        context = _chromium.new_context(base_url=live_server.url, locale=LOCALES[language], **VIEWPORTS[viewport])
        context.set_default_timeout(TIMEOUT_MS)
        context.add_cookies([{"name": settings.LANGUAGE_COOKIE_NAME, "value": language, "url": live_server.url}])
        contexts.append(context)
        page = context.new_page()
        page.crm_console_errors = []
        page.on("console", lambda msg: _record_console_error(page, msg))
        page.on("pageerror", lambda exc: uncaught.append(f"{page.url}: {exc}"))
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not uncaught, f"uncaught JavaScript errors: {uncaught}"


def _record_console_error(page, msg):
    url = msg.location.get("url", "")
    # Chromium asks for /favicon.ico on its own; the site has none and no page refers to one.
    if msg.type == "error" and not url.endswith("/favicon.ico"):
        page.crm_console_errors.append(f"{msg.text} ({url})" if url else msg.text)


@pytest.fixture
def browser_page(new_browser_page, browser_language, browser_viewport):
    return new_browser_page(language=browser_language, viewport=browser_viewport)


@pytest.fixture
def console_errors():
    return lambda page: list(page.crm_console_errors)


@pytest.fixture
def login(transactional_db):
    """login(page, user) or login(page, "Operator"): signs in through the admin login form."""

    def log_in(page, user):
        if isinstance(user, str):
            from tests.factories import UserFactory

            if user not in ROLES:
                raise ValueError(f"unknown role {user!r}; one of {ROLES}")
            user = UserFactory(username=f"browser-{user.lower()}", roles=[user])
        if not user.check_password(PASSWORD):
            user.set_password(PASSWORD)
            user.save(update_fields=["password"])
        page.goto("/admin/login/?next=/admin/")
        page.fill("#id_username", user.get_username())
        page.fill("#id_password", PASSWORD)
        with page.expect_navigation():
            page.click("#login-form [type=submit]")
        if "/admin/login/" in page.url:
            errors = page.locator(".errornote, .errorlist").all_inner_texts()
            raise AssertionError(f"login as {user.get_username()} failed: {errors}")
        return user

    return log_in


@pytest.fixture
def screenshot():
    """screenshot(page, "layers-dashboard-phone-zh-hans") -> Path of the full-page PNG."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)

    def take(page, name):
        path = SCREENSHOT_DIR / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
