"""The webhook settings panel in a real headless Chromium: add an endpoint (its secret shown once), send a test
message to a real receiver on loopback, and read its delivery in the log; then disable it."""

from pathlib import Path

from selenium.webdriver.common.keys import Keys
from standardwebhooks.webhooks import Webhook

from storage.local import LocalStorage
from tests.conftest import LiveServer, engine_for, make_settings
from tests.factories import make_user
from tests.web.browser import by_id, chromium, screenshot, text_of, wait_for
from tests.web.test_web_app import sign_in
from tests.webhooks.receiver import receiver
from tests.webhooks.test_webhooks import WEBHOOKS


def test_adding_an_endpoint_sending_a_test_and_reading_its_deliveries(
    primary_db_url: str, storage: LocalStorage, tmp_path: Path
) -> None:
    with receiver([500, 200]) as rx, LiveServer(make_settings(primary_db_url, storage, **WEBHOOKS)) as api:
        user = make_user(engine_for(primary_db_url))
        with chromium(tmp_path / "profile", tmp_path / "downloads") as driver:
            sign_in(driver, api.base_url, user)
            by_id(driver, "webhooks-link").click()
            wait_for(driver, lambda d: by_id(d, "view-webhooks").is_displayed())
            assert by_id(driver, "hooks-empty").is_displayed()

            # A refused address is said on the form, nothing is added.
            by_id(driver, "hook-url").send_keys("https://10.0.0.1/hook", Keys.ENTER)
            wait_for(driver, lambda d: "private address" in text_of(d, "hook-error"))

            by_id(driver, "hook-url").clear()
            by_id(driver, "hook-url").send_keys(rx.url())
            driver.find_element("css selector", '#hook-form input[value="job.failed"]').click()
            by_id(driver, "hook-description").send_keys("My server", Keys.ENTER)
            wait_for(driver, lambda d: d.find_elements("css selector", "#hook-list li"))
            secret = wait_for(driver, lambda d: text_of(d, "hook-secret-value"))
            assert secret.startswith("whsec_")
            endpoint = driver.find_element("css selector", "#hook-list li")
            assert "job.failed" not in endpoint.text and "My server" in endpoint.text

            endpoint.find_element("css selector", ".hook-test").click()
            # Retried after the 500 until delivered; the log follows by itself.
            wait_for(driver, lambda d: d.find_elements("css selector", '#delivery-rows tr[data-status="DELIVERED"]'))
            row = driver.find_element("css selector", "#delivery-rows tr")
            assert "webhook.test" in row.text and "HTTP 200" in row.text
            assert row.find_elements("css selector", "td")[3].text == "2"
            screenshot(driver, "web-webhooks.png")

            payload = Webhook(secret).verify(rx.received[-1].body, rx.received[-1].headers)
            assert payload["type"] == "webhook.test"

            endpoint.find_element("css selector", ".hook-toggle").click()
            wait_for(
                driver,
                lambda d: d.find_element("css selector", "#hook-list li").get_attribute("data-enabled") == "false",
            )
