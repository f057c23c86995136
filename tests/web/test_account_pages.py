"""The account pages in a real headless Chromium, with a real SMTP server: sign up, the mailed link, sign in,
enhance, the account page (sessions, a new key), sign out, the reset link, sign in with the new password; at
desktop and at phone width, by keyboard."""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from storage.local import LocalStorage
from tests.accounts.helpers import Mailbox, link_token, smtp_server
from tests.conftest import Harness, LiveServer, engine_for, make_settings
from tests.db_helpers import assert_balance_matches_ledger
from tests.factories import FIXTURES
from tests.web.browser import by_id, chromium, screenshot, text_of, wait_for
from tests.web.test_web_app import quoted, thumbnails_loaded, tile_statuses, tiles

PASSWORD = "lemon trees in winter"
NEW_PASSWORD = "the blue kettle sings"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as box:
        yield box


@pytest.fixture
def site(primary_db_url: str, storage: LocalStorage, mailbox: Mailbox) -> Iterator[Harness]:
    settings = make_settings(primary_db_url, storage, smtp_url=mailbox.url, signup_tokens=10, events_poll_seconds=0.1)
    with LiveServer(settings) as api:
        yield Harness(settings, engine_for(primary_db_url), storage, api)


def page_shown(driver: WebDriver, name: str) -> bool:
    return bool(driver.execute_script(f"return !document.getElementById('page-{name}').hidden"))


def notice(driver: WebDriver) -> str:
    return str(
        driver.execute_script("const n = document.getElementById('acct-notice'); return n.hidden ? '' : n.textContent")
    )


def fill(driver: WebDriver, fields: dict[str, str]) -> None:
    """Type into each field; Enter in the last submits the form (no mouse)."""
    items = list(fields.items())
    for index, (field, value) in enumerate(items):
        element = by_id(driver, field)
        element.clear()
        element.send_keys(value, *([Keys.ENTER] if index == len(items) - 1 else []))


def open_link(driver: WebDriver, h: Harness, mailbox: Mailbox, email: str, count: int, purpose: str) -> None:
    token = link_token(mailbox.wait_for(email, count), purpose)
    driver.get(f"{h.api.base_url}/account#/{purpose}/{token}")


def test_a_person_signs_up_verifies_enhances_signs_out_and_resets(
    site: Harness, mailbox: Mailbox, tmp_path: Path
) -> None:
    h = site
    email = f"grace-{h.settings.task_queue[-8:]}@example.com"
    with chromium(tmp_path / "profile", tmp_path / "downloads") as driver:
        driver.get(h.api.base_url + "/")
        wait_for(driver, lambda d: "/account" in d.current_url and page_shown(d, "signin"))
        screenshot(driver, "account-sign-in.png")

        by_id(driver, "page-signin").find_element("link text", "Create an account").click()
        wait_for(driver, lambda d: page_shown(d, "signup"))
        fill(driver, {"signup-email": email, "signup-password": "password123"})
        wait_for(driver, lambda d: "common" in text_of(d, "signup-problem"))  # the rules, said on the page
        fill(driver, {"signup-password": PASSWORD})
        wait_for(driver, lambda d: notice(d).startswith("Check your mail"))
        screenshot(driver, "account-sign-up.png")

        open_link(driver, h, mailbox, email, 1, "verify")
        wait_for(driver, lambda d: text_of(d, "verify-title") == "Email confirmed")
        by_id(driver, "page-verify").find_element("link text", "Sign in").click()
        wait_for(driver, lambda d: page_shown(d, "signin"))
        fill(driver, {"signin-email": email, "signin-password": PASSWORD})
        wait_for(driver, lambda d: by_id(d, "view-albums").is_displayed())
        cookies = {cookie["name"]: cookie for cookie in driver.get_cookies()}
        session_cookie = cookies["__Host-ae_session"]
        assert session_cookie["httpOnly"] and session_cookie["secure"] and session_cookie["sameSite"] == "Lax"
        assert text_of(driver, "balance-value") == "10"

        # The app works on the session: an album, a photo, an enhance.
        by_id(driver, "album-name").send_keys("First roll", Keys.ENTER)
        wait_for(driver, lambda d: text_of(d, "album-title") == "First roll")
        by_id(driver, "file-input").send_keys(str(FIXTURES / "rocket.jpg"))
        wait_for(driver, lambda d: len(tiles(d)) == 1 and thumbnails_loaded(d, 1))
        quoted(driver)
        by_id(driver, "enhance-button").click()
        wait_for(driver, lambda d: tile_statuses(d) == ["COMPLETED"])
        wait_for(driver, lambda d: text_of(d, "balance-value") == "8")

        # The account page: this browser's session, a new key shown once.
        by_id(driver, "account-link").click()
        wait_for(driver, lambda d: page_shown(d, "account") and text_of(d, "acct-email") == email)
        wait_for(driver, lambda d: "Chrome on Linux (this browser)" in text_of(d, "session-list"))
        fill(driver, {"key-name": "photo backup"})
        wait_for(driver, lambda d: text_of(d, "new-key-value").startswith("ae_"))
        key = text_of(driver, "new-key-value")
        assert "photo backup" in text_of(driver, "key-list")
        assert h.http.get("/api/me", headers={"Authorization": f"Bearer {key}"}).json()["email"] == email
        driver.execute_script("document.getElementById('sessions-title').scrollIntoView()")
        screenshot(driver, "account-page.png")
        driver.set_window_size(390, 900)
        screenshot(driver, "account-page-phone.png")
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390, f"the account page scrolls sideways at phone width ({width}px)"
        driver.set_window_size(1280, 960)

        by_id(driver, "acct-sign-out").click()
        wait_for(driver, lambda d: page_shown(d, "signin") and notice(d) == "Signed out.")
        assert "__Host-ae_session" not in {cookie["name"] for cookie in driver.get_cookies()}

        by_id(driver, "page-signin").find_element("link text", "Forgot your password?").click()
        wait_for(driver, lambda d: page_shown(d, "forgot"))
        fill(driver, {"forgot-email": email})
        wait_for(driver, lambda d: "on its way" in notice(d))
        open_link(driver, h, mailbox, email, 2, "reset")
        wait_for(driver, lambda d: page_shown(d, "reset"))
        fill(driver, {"reset-password": NEW_PASSWORD})
        wait_for(driver, lambda d: page_shown(d, "signin") and "Password changed" in notice(d))
        fill(driver, {"signin-email": email, "signin-password": PASSWORD})
        wait_for(driver, lambda d: text_of(d, "signin-problem") == "Wrong email or password")
        fill(driver, {"signin-password": NEW_PASSWORD})
        wait_for(driver, lambda d: by_id(d, "view-albums").is_displayed())
        assert text_of(driver, "balance-value") == "8"
        user_id = re.sub(r"\s", "", str(driver.execute_script("return state.me.id")))
    assert_balance_matches_ledger(h.engine, user_id)
