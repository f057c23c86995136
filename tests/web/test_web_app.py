"""The web app in a real headless Chromium against the real API over real HTTP: an album owner's whole journey,
and cancelling a running batch from the page."""

import asyncio
import functools
import io
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image as PILImage
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select
from temporalio.testing import WorkflowEnvironment

from core.vocabulary import Tier
from storage.local import LocalStorage
from tests.conftest import Harness, LiveServer, engine_for, make_settings, temporal_stack
from tests.db_helpers import assert_balance_matches_ledger, balance, original_key_of
from tests.exiftool import FIXTURE, read_tags
from tests.factories import FIXTURES, UserWithKey, make_album, make_user, photo_bytes
from tests.storage_faults import GatedStorage
from tests.web.browser import by_id, chromium, screenshot, text_of, wait_for

PHOTOS = ("rocket.jpg", "chelsea.png", "coffee.png")


@pytest.fixture
def web(primary_db_url: str, storage: LocalStorage) -> Iterator[Harness]:
    """The API (direct mode) serving the web app."""
    settings = make_settings(primary_db_url, storage, events_poll_seconds=0.1)
    with LiveServer(settings) as api:
        yield Harness(settings, engine_for(primary_db_url), storage, api)


def sign_in(driver: WebDriver, base_url: str, user: UserWithKey) -> None:
    driver.get(base_url + "/#/key")  # the API-key sign-in (people use /account)
    wait_for(driver, lambda d: by_id(d, "api-key").is_displayed())
    by_id(driver, "api-key").send_keys(user.api_key, Keys.ENTER)
    wait_for(driver, lambda d: by_id(d, "view-albums").is_displayed())


def tier(driver: WebDriver, name: str) -> WebElement:
    """The tier's card (its radio is invisible: the card is what a user clicks)."""
    return driver.find_element("xpath", f"//input[@value='{name}']/..")


def quoted(driver: WebDriver) -> None:
    """Wait until the quote shown is the server's answer for the choices now on the page."""
    wait_for(driver, lambda d: by_id(d, "enhance-panel").get_attribute("data-quote") == "ready")


def tiles(driver: WebDriver) -> list[WebElement]:
    return driver.find_elements("css selector", "#image-grid > li")


def tile_statuses(driver: WebDriver) -> list[str | None]:
    return [tile.get_attribute("data-status") for tile in tiles(driver)]


def thumbnails_loaded(driver: WebDriver, count: int) -> bool:
    script = "return [...document.querySelectorAll('#image-grid img')].filter(i => i.complete && i.naturalWidth).length"
    return driver.execute_script(script) == count


def test_an_owner_uploads_enhances_compares_and_downloads(web: Harness, tmp_path: Path) -> None:
    user = make_user(web.engine, tokens=20)
    downloads = tmp_path / "downloads"
    with chromium(tmp_path / "profile", downloads) as driver:
        sign_in(driver, web.api.base_url, user)
        assert text_of(driver, "balance-value") == "20"

        by_id(driver, "album-name").send_keys("Summer 2026", Keys.ENTER)
        wait_for(driver, lambda d: text_of(d, "album-title") == "Summer 2026")

        by_id(driver, "file-input").send_keys("\n".join(str(FIXTURES / name) for name in PHOTOS))
        wait_for(driver, lambda d: len(tiles(d)) == 3 and thumbnails_loaded(d, 3))
        assert [tile.find_element("css selector", ".name").text for tile in tiles(driver)] == list(PHOTOS)

        # The quote before confirming: 3 photos at TIER_1K, 2 tokens each.
        quoted(driver)
        assert text_of(driver, "quote-count") == "3"
        assert text_of(driver, "quote-cost") == "6 tokens"
        assert text_of(driver, "quote-balance") == "20 tokens"
        assert text_of(driver, "quote-after") == "14 tokens"
        assert by_id(driver, "enhance-button").text == "Enhance 3 photos · 6 tokens"
        # Why a request would be refused, said before it is sent: 4K would cost 30 tokens.
        tier(driver, "TIER_4K").click()
        quoted(driver)
        assert text_of(driver, "quote-problem").startswith("Not enough tokens: this needs 30, you have 20.")
        assert not by_id(driver, "enhance-button").is_enabled()
        tier(driver, "TIER_1K").click()
        quoted(driver)
        assert text_of(driver, "quote-problem") == ""
        screenshot(driver, "web-album.png")

        # Progress arrives over the event stream, on the same page: no reload.
        driver.execute_script(
            "window.sameDocument = true; window.progressSeen = [];"
            "new MutationObserver(() => window.progressSeen.push(document.getElementById('progress-text').textContent))"
            ".observe(document.getElementById('progress-text'), {childList: true, characterData: true, subtree: true});"
        )
        by_id(driver, "enhance-button").click()
        wait_for(driver, lambda d: by_id(d, "progress-panel").get_attribute("data-status") == "COMPLETED")
        wait_for(driver, lambda d: tile_statuses(d) == ["COMPLETED"] * 3)
        assert "3 of 3 done" in text_of(driver, "progress-text")
        assert driver.execute_script("return window.sameDocument") is True
        assert len(driver.execute_script("return window.progressSeen")) >= 2
        wait_for(driver, lambda d: text_of(d, "balance-value") == "14")

        # Before/after: the slider is a labelled range input, moved with the keyboard.
        tiles(driver)[0].find_element("css selector", ".compare-open").click()
        wait_for(
            driver,
            lambda d: d.execute_script(
                "return ['compare-before', 'compare-after'].every(id => document.getElementById(id).naturalWidth > 0)"
            ),
        )
        slider = by_id(driver, "compare-slider")
        slider.send_keys(Keys.ARROW_LEFT * 10)
        assert slider.get_attribute("value") == "40"
        assert "40%" in by_id(driver, "compare-after-clip").value_of_css_property("clip-path")
        screenshot(driver, "web-before-after.jpg")

        by_id(driver, "compare-download").click()
        result = wait_for(driver, lambda d: [p for p in downloads.glob("*.jpg")] or None)[0]
        assert result.name == "rocket-1K.jpg"
        with PILImage.open(io.BytesIO(result.read_bytes())) as photo:
            assert photo.format == "JPEG" and max(photo.size) == 1024
        driver.find_element("css selector", "#compare button[value=close]").click()

        # The balance and the ledger changed.
        by_id(driver, "balance").click()
        wait_for(driver, lambda d: by_id(d, "view-ledger").is_displayed())
        rows = driver.find_elements("css selector", "#ledger-rows tr")
        assert [row.get_attribute("data-type") for row in rows] == ["CONSUME", "GRANT"]
        cells = [cell.text for cell in rows[0].find_elements("css selector", "td")]
        assert cells[1:] == ["Enhancement charged\n3 photos at 1K · Summer 2026", "-6", "14"]
        assert text_of(driver, "ledger-balance") == "14"

        # At phone width nothing runs off the side of the page.
        driver.set_window_size(390, 844)
        driver.back()
        wait_for(driver, lambda d: by_id(d, "view-album").is_displayed() and len(tiles(d)) == 3)
        assert overflowing(driver) == []
        screenshot(driver, "web-phone.png")
        assert foreign_requests(driver, web.api.base_url) == []
    assert balance(web.engine, user.id) == 14
    assert_balance_matches_ledger(web.engine, user.id)


def overflowing(driver: WebDriver) -> list[str]:
    """The elements that stick out of the viewport to the right (they would make the page scroll sideways)."""
    script = """
        const width = document.documentElement.clientWidth;
        return [...document.querySelectorAll('body *')]
            .filter(e => e.getClientRects().length && e.getBoundingClientRect().right > width + 0.5)
            .map(e => `${e.tagName.toLowerCase()}#${e.id}.${e.className}: ${e.getBoundingClientRect().right}`);
    """
    return driver.execute_script(script)


def foreign_requests(driver: WebDriver, origin: str) -> list[str]:
    """Every resource the page loaded from anywhere but the service (blob: URLs are the page's own)."""
    urls = driver.execute_script("return performance.getEntriesByType('resource').map(entry => entry.name)")
    return [url for url in urls if not url.startswith((origin, "blob:", "data:"))]


def test_api_docs_render_without_any_other_origin(web: Harness, tmp_path: Path) -> None:
    with chromium(tmp_path / "profile", tmp_path / "downloads") as driver:
        driver.get(web.api.base_url + "/docs")
        wait_for(driver, lambda d: "/api/batches/{batchId}/events" in d.find_element("tag name", "body").text)
        assert "album-enhance" in driver.find_element("css selector", ".swagger-ui .info .title").text
        assert foreign_requests(driver, web.api.base_url) == []


@dataclass
class HeldBatch:
    h: Harness
    user: UserWithKey
    storage: GatedStorage
    driver: WebDriver


@contextmanager
def batch_held_at_the_second_photo(db_url: str, tmp_path: Path) -> Iterator[HeldBatch]:
    """The album page of three photos whose batch (started from the page, direct mode) is held inside its second
    photo: the first COMPLETED, the second PROCESSING, the third PENDING. Released when the block ends."""
    storage = GatedStorage(tmp_path / "storage")
    settings = make_settings(db_url, storage, events_poll_seconds=0.1, direct_poll_interval_seconds=0.05)
    with LiveServer(settings, storage=storage) as api:
        h = Harness(settings, engine_for(db_url), storage, api)
        user, album, images = album_of_photos(h)
        try:
            with chromium(tmp_path / "profile", tmp_path / "downloads") as driver:
                open_album(driver, h, user, album)
                # Gated once the thumbnails are made: in direct mode the API reads the same storage.
                storage.gate(original_key_of(h.engine, images[1]))
                by_id(driver, "enhance-button").click()
                assert storage.waiting.wait(30), "the batch never reached the gated photo"
                wait_for(driver, lambda d: tile_statuses(d) == ["COMPLETED", "PROCESSING", "PENDING"])
                yield HeldBatch(h, user, storage, driver)
        finally:
            storage.release.set()


def test_pausing_and_resuming_a_batch_from_the_page(primary_db_url: str, tmp_path: Path) -> None:
    with batch_held_at_the_second_photo(primary_db_url, tmp_path) as held:
        driver = held.driver
        by_id(driver, "pause-batch").click()
        wait_for(driver, lambda d: by_id(d, "progress-panel").get_attribute("data-status") == "PAUSED")
        assert by_id(driver, "resume-batch").is_displayed() and not by_id(driver, "pause-batch").is_displayed()
        held.storage.release.set()
        # The photo in progress finishes; the next one waits.
        wait_for(driver, lambda d: tile_statuses(d)[:2] == ["COMPLETED", "COMPLETED"])
        assert tile_statuses(driver)[2] == "PENDING"
        assert "Paused" in text_of(driver, "progress-text")

        by_id(driver, "resume-batch").click()
        wait_for(driver, lambda d: by_id(d, "progress-panel").get_attribute("data-status") == "COMPLETED")
        wait_for(driver, lambda d: tile_statuses(d) == ["COMPLETED"] * 3)
    assert balance(held.h.engine, held.user.id) == 100 - 6
    assert_balance_matches_ledger(held.h.engine, held.user.id)


def album_of_photos(h: Harness, tokens: int = 100) -> tuple[UserWithKey, str, list[str]]:
    """A user with tokens and an album of the three sample photos, uploaded through the API."""
    user = make_user(h.engine, tokens=tokens)
    album = make_album(h.engine, user, name="Harbour walk")
    photos = [("files", (name, photo_bytes(name))) for name in PHOTOS]
    uploaded = h.http.post(f"/api/albums/{album}/images", headers=user.headers, files=photos)
    assert uploaded.status_code == 201, uploaded.text
    return user, album, [image["id"] for image in uploaded.json()["images"]]


def open_album(driver: WebDriver, h: Harness, user: UserWithKey, album: str) -> None:
    sign_in(driver, h.api.base_url, user)
    driver.get(f"{h.api.base_url}/#/albums/{album}")
    wait_for(driver, lambda d: len(tiles(d)) == 3 and thumbnails_loaded(d, 3))
    quoted(driver)


def watched_batch_ended(driver: WebDriver, before: str | None) -> str | None:
    """The id of the batch the page watches, once it is another than `before` and has completed."""
    script = "const b = state.batch; return b && b.batchId !== arguments[0] && b.status === 'COMPLETED' && b.batchId"
    return driver.execute_script(script, before) or None


def set_checkbox(driver: WebDriver, element: WebElement, checked: bool) -> None:
    if element.is_selected() != checked:
        driver.execute_script("arguments[0].click()", element)


def test_the_page_quotes_what_the_enhance_then_does(primary_db_url: str, tmp_path: Path) -> None:
    """Every tier, with and without skipping, for the album and for one selected photo: what the page says before
    the click (photos, cost, balance after, or why not) is what the enhance then does, or refuses."""
    storage = LocalStorage(tmp_path / "storage")
    settings = make_settings(primary_db_url, storage, events_poll_seconds=0.1, max_batch_size=2)
    with LiveServer(settings) as api:
        h = Harness(settings, engine_for(primary_db_url), storage, api)
        user, album, images = album_of_photos(h, tokens=25)
        seen = set()
        with chromium(tmp_path / "profile", tmp_path / "downloads") as driver:
            open_album(driver, h, user, album)
            set_checkbox(driver, tiles(driver)[0].find_element("css selector", ".select"), True)
            for name, skip, only_selected in itertools.product(Tier, (False, True), (False, True)):
                tier(driver, name).click()
                set_checkbox(driver, by_id(driver, "skip-enhanced"), skip)
                set_checkbox(driver, by_id(driver, "only-selected"), only_selected)
                quoted(driver)
                shown = {key: text_of(driver, f"quote-{key}") for key in ("count", "cost", "after", "problem")}
                before = balance(h.engine, user.id)
                body: dict[str, object] = {"tier": name, "skipAlreadyEnhanced": skip}
                if only_selected:
                    body["imageIds"] = images[:1]
                if shown["problem"]:
                    # The page would not send it; sent anyway, the enhance refuses it as the page said.
                    refusal = by_id(driver, "quote-problem").get_attribute("data-status")
                    answer = h.http.post(f"/api/albums/{album}/enhance", headers=user.headers, json=body)
                    if refusal:
                        assert str(answer.status_code) == refusal, (body, shown, answer.text)
                    else:
                        assert answer.status_code == 200 and answer.json()["queued"] == 0, (body, answer.text)
                    assert balance(h.engine, user.id) == before
                    seen.add(refusal or "nothing")
                    continue
                watched = driver.execute_script("return state.batch && state.batch.batchId")
                by_id(driver, "enhance-button").click()
                batch_id = wait_for(driver, functools.partial(watched_batch_ended, before=watched))
                batch = h.http.get(f"/api/batches/{batch_id}", headers=user.headers).json()
                charged = (str(batch["totalImages"]), f"{batch['tokensCharged']} tokens")
                assert charged == (shown["count"], shown["cost"])
                assert f"{balance(h.engine, user.id)} tokens" == shown["after"]
                seen.add("queued")
        assert seen == {"queued", "nothing", "400", "402"}
        assert_balance_matches_ledger(h.engine, user.id)


async def test_cancelling_a_running_batch_from_the_page_refunds_it(
    temporal_env: WorkflowEnvironment, primary_db_url: str, tmp_path: Path
) -> None:
    storage = GatedStorage(tmp_path / "storage")
    async with temporal_stack(temporal_env.client, primary_db_url, storage, events_poll_seconds=0.1) as h:
        user, album, images = await asyncio.to_thread(album_of_photos, h)
        storage.gate(original_key_of(h.engine, images[1]))  # the batch holds at the second photo
        try:
            # Selenium blocks: run it off the event loop, which the worker needs to make progress.
            await asyncio.to_thread(cancel_from_the_page, h, user, album, storage, tmp_path)
        finally:
            storage.release.set()
        assert balance(h.engine, user.id) == 100 - 2  # the first photo was enhanced; the rest came back
        assert_balance_matches_ledger(h.engine, user.id)


def cancel_from_the_page(h: Harness, user: UserWithKey, album: str, storage: GatedStorage, tmp_path: Path) -> None:
    with chromium(tmp_path / "profile", tmp_path / "downloads") as driver:
        open_album(driver, h, user, album)
        by_id(driver, "enhance-button").click()
        assert storage.waiting.wait(30), "the batch never reached the gated photo"
        wait_for(driver, lambda d: tile_statuses(d) == ["COMPLETED", "PROCESSING", "PENDING"])
        assert "1 of 3 done" in text_of(driver, "progress-text")
        screenshot(driver, "web-progress.png")

        by_id(driver, "cancel-batch").click()
        driver.switch_to.alert.accept()
        wait_for(driver, lambda d: by_id(d, "progress-panel").get_attribute("data-status") == "CANCELLED")
        wait_for(driver, lambda d: "4 tokens refunded" in text_of(d, "progress-text"))
        wait_for(driver, lambda d: tile_statuses(d) == ["COMPLETED", "CANCELLED", "CANCELLED"])
        wait_for(driver, lambda d: text_of(d, "balance-value") == "98")
        assert not by_id(driver, "cancel-batch").is_displayed()

        by_id(driver, "balance").click()
        wait_for(driver, lambda d: by_id(d, "view-ledger").is_displayed())
        types = [row.get_attribute("data-type") for row in driver.find_elements("css selector", "#ledger-rows tr")]
        assert types == ["REFUND", "REFUND", "CONSUME", "GRANT"]


def test_an_owner_picks_webp_and_keeps_the_location(web: Harness, tmp_path: Path) -> None:
    user = make_user(web.engine, tokens=20)
    downloads = tmp_path / "downloads"
    with chromium(tmp_path / "profile", downloads) as driver:
        sign_in(driver, web.api.base_url, user)
        by_id(driver, "album-name").send_keys("Lisbon", Keys.ENTER)
        wait_for(driver, lambda d: text_of(d, "album-title") == "Lisbon")
        by_id(driver, "file-input").send_keys(str(FIXTURE))
        wait_for(driver, lambda d: len(tiles(d)) == 1 and thumbnails_loaded(d, 1))

        assert by_id(driver, "output-format").get_attribute("value") == "jpeg"
        assert not by_id(driver, "keep-location").is_selected()
        assert "GPS" in text_of(driver, "keep-location-hint")
        Select(by_id(driver, "output-format")).select_by_value("webp")
        by_id(driver, "keep-location").click()
        quoted(driver)
        by_id(driver, "enhance-button").click()
        wait_for(driver, lambda d: tile_statuses(d) == ["COMPLETED"])

        tiles(driver)[0].find_element("css selector", ".download").click()
        result = wait_for(driver, lambda d: list(downloads.glob("*.webp")) or None)[0]
        assert result.name == "phone-1K.webp"
        tags = read_tags(result.read_bytes())
        assert tags["File:MIMEType"] == "image/webp"
        assert tags["ExifIFD:DateTimeOriginal"] == "2024:07:14 18:32:05"
        assert tags["Composite:GPSLatitude"] == pytest.approx(38.7223)
