"""The page tells the truth, in a real headless Chromium against the real API over real HTTP: a long photo's tiles
and the time left, the batch panel after a cancel, the header and the zip button during a batch, ordinary states
as notices, zoom and pan of the before/after view, and the ledger with its context at phone width."""

import io
import re
from pathlib import Path

import pytest
from PIL import Image as PILImage
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from storage.local import LocalStorage
from tests.conftest import Harness, LiveServer, engine_for, make_settings
from tests.db_helpers import assert_balance_matches_ledger, balance
from tests.factories import FIXTURES, make_album, make_image, make_user, photo_bytes
from tests.web.browser import by_id, chromium, screenshot, text_of, wait_for
from tests.web.test_web_app import (
    batch_held_at_the_second_photo,
    overflowing,
    quoted,
    sign_in,
    tier,
    tile_statuses,
    tiles,
)

RED = "rgb(201, 42, 42)"  # --danger: what an error looks like
TIME_LEFT = re.compile(r"^(about \d+ (s|min) left|a few seconds left)$")


def photo_crop(width: int, height: int) -> bytes:
    with PILImage.open(FIXTURES / "astronaut.png") as image:
        out = io.BytesIO()
        image.convert("RGB").crop((0, 0, width, height)).save(out, "JPEG", quality=92)
        return out.getvalue()


def css(driver: WebDriver, element_id: str, prop: str) -> str:
    return str(by_id(driver, element_id).value_of_css_property(prop))


def record_texts(driver: WebDriver, element_id: str, name: str) -> None:
    """Keep every text the element shows from now on in window[name] (a browser-side log, nothing missed)."""
    driver.execute_script(
        "const el = document.getElementById(arguments[0]); window[arguments[1]] = [el.textContent];"
        "new MutationObserver(() => window[arguments[1]].push(el.textContent))"
        ".observe(el, {childList: true, characterData: true, subtree: true});",
        element_id,
        name,
    )


@pytest.mark.usefixtures("sr_runtime")
def test_a_long_photo_shows_its_tiles_and_the_time_left_while_the_header_and_zip_keep_up(
    primary_db_url: str, tmp_path: Path
) -> None:
    storage = LocalStorage(tmp_path / "storage")
    settings = make_settings(
        primary_db_url,
        storage,
        enhance_engine="sr",
        sr_tile_size=64,
        sr_processes=1,
        activity_progress_interval_seconds=0.1,
        events_poll_seconds=0.1,
    )
    with LiveServer(settings) as api:
        h = Harness(settings, engine_for(primary_db_url), storage, api)
        user = make_user(h.engine, tokens=20)
        album = make_album(h.engine, user, name="Launch day")
        # First a photo that cannot be read (it fails and is refunded), then one that shrinks to 1K (quick), then
        # one the network enlarges 3.2x in two passes, 100 tiles: the long one.
        make_image(h.engine, h.storage, album, data=b"not a photo", sort_order=0)
        files = [("files", (name, photo_crop(*size), "image/jpeg")) for name, size in [("wide.jpg", (1200, 900))]]
        files.append(("files", ("small.jpg", photo_crop(320, 240), "image/jpeg")))
        assert h.http.post(f"/api/albums/{album}/images", headers=user.headers, files=files).status_code == 201
        with chromium(tmp_path / "profile", tmp_path / "downloads") as driver:
            sign_in(driver, api.base_url, user)
            driver.get(f"{api.base_url}/#/albums/{album}")
            wait_for(driver, lambda d: len(tiles(d)) == 3)
            quoted(driver)
            assert by_id(driver, "download-zip").get_attribute("disabled") is not None
            by_id(driver, "enhance-button").click()
            wait_for(driver, lambda d: by_id(d, "image-progress").is_displayed())
            record_texts(driver, "image-progress-step", "stepsSeen")

            # The long photo, tile by tile, with an estimate; its own tile shows the bar too.
            wait_for(driver, lambda d: TIME_LEFT.match(text_of(d, "image-progress-eta")), timeout=120)
            assert text_of(driver, "image-progress-name") == "small.jpg"
            assert re.fullmatch(r"tile \d+ of 100", text_of(driver, "image-progress-step"))
            assert 0 < float(by_id(driver, "image-progress-bar").get_attribute("value") or 0) < 1
            overlay = tiles(driver)[2].find_element("css selector", ".tile-progress")
            assert overlay.is_displayed() and re.match(r"\d+/100", overlay.text)
            # Meanwhile the failed photo's refund is in the header and the finished photo can be downloaded.
            assert tile_statuses(driver) == ["FAILED", "COMPLETED", "PROCESSING"]
            assert text_of(driver, "balance-value") == "16"
            assert by_id(driver, "download-zip").is_enabled()
            assert text_of(driver, "album-meta") == "3 photos · 1 enhanced"
            screenshot(driver, "web-sr-progress.png")

            wait_for(driver, lambda d: by_id(d, "progress-panel").get_attribute("data-status") == "COMPLETED", 180)
            assert text_of(driver, "progress-state") == "Finished"  # one photo failed: not all were enhanced
            assert not by_id(driver, "image-progress").is_displayed()
            assert not overlay.is_displayed()
            steps = driver.execute_script("return window.stepsSeen")
            tiles_seen = [int(m[1]) for step in steps if (m := re.match(r"tile (\d+)", step))]
            assert len(set(tiles_seen)) >= 3 and tiles_seen == sorted(tiles_seen), tiles_seen
            check_the_estimate(driver)
    assert balance(h.engine, user.id) == 16
    assert_balance_matches_ledger(h.engine, user.id)


def check_the_estimate(driver: WebDriver) -> None:
    """The page's estimate of what is left, on steps as the stream sends them (the page's own functions)."""
    cases = driver.execute_script(
        "const at = (done, total, elapsed, first) => ({done, total, elapsed, first});"
        "return ["
        # 6 of 48 tiles done in 60 s: 10 s a tile, 42 to go.
        "  [secondsPerTile(at(6, 48, 60, {done: 6, elapsed: 60})), aboutLeft(420)],"
        # A slow start (the network loading): the pace is measured over the tiles seen since, 5 s a tile.
        "  [secondsPerTile(at(6, 48, 60, {done: 2, elapsed: 40})), aboutLeft(42 * 5)],"
        # Nothing done yet: no pace to go by.
        "  [secondsPerTile(at(0, 48, 3, {done: 0, elapsed: 3})), aboutLeft(5)],"
        "  [null, aboutLeft(2 * 3600 + 59 * 60 + 30)],"
        "]"
    )
    assert cases == [
        [10, "about 7 min left"],
        [5, "about 4 min left"],
        [None, "a few seconds left"],
        [None, "about 3 h 0 min left"],
    ]


def test_after_a_cancel_the_panel_says_cancelled_not_enhancing(primary_db_url: str, tmp_path: Path) -> None:
    with batch_held_at_the_second_photo(primary_db_url, tmp_path) as held:
        driver = held.driver
        assert text_of(driver, "progress-title") == "Enhancing at 1K"
        record_texts(driver, "progress-state", "titles")

        by_id(driver, "cancel-batch").click()
        driver.switch_to.alert.accept()
        wait_for(driver, lambda d: by_id(d, "progress-panel").get_attribute("data-status") == "CANCELLED")
        assert text_of(driver, "progress-title") == "Cancelled at 1K"
        # From the click on, the panel never claimed to be enhancing.
        titles = driver.execute_script("return window.titles")
        assert titles[0] == "Enhancing" and set(titles[1:]) <= {"Cancelling", "Cancelled"}, titles
        assert titles[-1] == "Cancelled"
        for button in ("pause-batch", "resume-batch", "cancel-batch"):
            assert not by_id(driver, button).is_displayed(), button
        wait_for(driver, lambda d: text_of(d, "balance-value") == "98")
        assert not by_id(driver, "image-progress").is_displayed()
        by_id(driver, "dismiss-batch").click()
        assert not by_id(driver, "progress-panel").is_displayed()
    assert balance(held.h.engine, held.user.id) == 98
    assert_balance_matches_ledger(held.h.engine, held.user.id)


def test_notices_zoom_and_the_ledger_at_phone_width(primary_db_url: str, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    settings = make_settings(
        primary_db_url, storage, events_poll_seconds=0.1, tokens_help_url="mailto:tokens@example.com"
    )
    with LiveServer(settings) as api:
        h = Harness(settings, engine_for(primary_db_url), storage, api)
        user = make_user(h.engine, tokens=7)
        album = make_album(h.engine, user, name="Harbour walk")
        with chromium(tmp_path / "profile", tmp_path / "downloads") as driver:
            sign_in(driver, api.base_url, user)
            driver.get(f"{api.base_url}/#/albums/{album}")
            quoted(driver)
            # An empty album is an ordinary state: a notice, not a red error.
            assert text_of(driver, "quote-problem") == "Upload photos first."
            assert by_id(driver, "quote-problem").get_attribute("class") == "notice"
            assert css(driver, "quote-problem", "color") != RED
            assert css(driver, "quote-problem", "background-color") == "rgba(237, 242, 255, 1)"
            screenshot(driver, "web-notice.png")

            files = [("files", (name, photo_bytes(name))) for name in ("rocket.jpg", "chelsea.png")]
            assert h.http.post(f"/api/albums/{album}/images", headers=user.headers, files=files).status_code == 201
            driver.refresh()
            wait_for(driver, lambda d: len(tiles(d)) == 2)
            quoted(driver)
            by_id(driver, "enhance-button").click()
            wait_for(driver, lambda d: by_id(d, "progress-panel").get_attribute("data-status") == "COMPLETED")
            assert text_of(driver, "progress-title") == "Enhanced at 1K"
            wait_for(driver, lambda d: text_of(d, "balance-value") == "3")
            quoted(driver)
            assert text_of(driver, "quote-problem").startswith("Nothing to enhance")
            assert by_id(driver, "quote-problem").get_attribute("class") == "notice"
            # Short of tokens: a warning that says how to get more (the operator's link).
            tier(driver, "TIER_2K").click()
            quoted(driver)
            problem = by_id(driver, "quote-problem")
            assert problem.get_attribute("class") == "warning" and css(driver, "quote-problem", "color") != RED
            assert problem.text.startswith("Not enough tokens: this needs 10, you have 3.")
            link = problem.find_element("css selector", "a")
            assert (link.text, link.get_attribute("href")) == ("Get more tokens", "mailto:tokens@example.com")
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", problem)
            screenshot(driver, "web-not-enough-tokens.png")

            check_zoom_and_pan(driver)
            driver.find_element("css selector", "#compare button[value=close]").click()

            # The ledger at phone width: every row says what it was for, and amount and balance stay in view.
            driver.set_window_size(390, 844)
            by_id(driver, "balance").click()
            wait_for(driver, lambda d: by_id(d, "view-ledger").is_displayed())
            rows = driver.find_elements("css selector", "#ledger-rows tr")
            assert [row.get_attribute("data-type") for row in rows] == ["CONSUME", "GRANT"]
            context = rows[0].find_element("css selector", ".context")
            assert context.text == "2 photos at 1K · Harbour walk"
            assert str(context.find_element("css selector", "a").get_attribute("href")).endswith(f"#/albums/{album}")
            assert rows[0].find_element("css selector", ".when-inline").is_displayed()
            assert not rows[0].find_element("css selector", "td.when").is_displayed()
            width = driver.execute_script("return document.documentElement.clientWidth")
            for row in rows:
                amount, after = row.find_elements("css selector", "td.num")
                assert amount.is_displayed() and after.is_displayed()
                assert amount.rect["x"] + amount.rect["width"] <= after.rect["x"] + 0.5
                assert after.rect["x"] + after.rect["width"] <= width + 0.5
            assert [cell.text for cell in rows[0].find_elements("css selector", "td.num")] == ["-4", "3"]
            scroll = "const w = document.querySelector('.table-wrap'); return w.scrollWidth - w.clientWidth"
            assert driver.execute_script(scroll) == 0, "the table scrolls sideways"
            assert overflowing(driver) == []
            screenshot(driver, "web-ledger-phone.png")

            # The before/after view at phone width: its zoom controls wrap under the title, nothing sticks out.
            driver.back()
            wait_for(driver, lambda d: by_id(d, "view-album").is_displayed() and len(tiles(d)) == 2)
            open_compare(driver, 1)
            wait_for(
                driver, lambda d: d.execute_script("return document.getElementById('compare-after').naturalWidth > 0")
            )
            assert all(by_id(driver, name).is_displayed() for name in ("zoom-out", "zoom-in", "zoom-fit", "zoom-100"))
            by_id(driver, "zoom-100").click()
            assert text_of(driver, "zoom-level") == "100 %"
            # The zoomed photos are larger than the stage, which clips them (overflow: hidden); nothing else is.
            assert [
                e for e in overflowing(driver) if not e.startswith(("img#compare-before", "img#compare-after"))
            ] == []
            page = "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
            assert driver.execute_script(page) == 0
            stage = by_id(driver, "compare-stage").rect
            assert stage["x"] >= 0 and stage["x"] + stage["width"] <= width + 0.5
            screenshot(driver, "web-zoom-phone.png")
    assert_balance_matches_ledger(h.engine, user.id)


def check_zoom_and_pan(driver: WebDriver) -> None:
    """The before/after view zooms to 100 % (one enhanced pixel per screen pixel), pans by dragging and with the
    keyboard (both photos together, never past their edges, the split line staying put), and fits again."""
    open_compare(driver, 0)
    loaded = "return ['compare-before', 'compare-after'].every(id => document.getElementById(id).naturalWidth > 0)"
    wait_for(driver, lambda d: d.execute_script(loaded))
    assert text_of(driver, "zoom-level").startswith("Fit · ")
    clip = by_id(driver, "compare-after-clip").value_of_css_property("clip-path")

    by_id(driver, "zoom-100").click()
    assert text_of(driver, "zoom-level") == "100 %"
    width, natural = driver.execute_script(
        "const a = document.getElementById('compare-after'); return [a.getBoundingClientRect().width, a.naturalWidth]"
    )
    assert abs(width - natural) < 1.5, (width, natural)

    def offset() -> tuple[float, float]:
        """Where the enhanced photo's corner is, after checking that the original moved the same way."""
        script = "return ['compare-after', 'compare-before'].map(id => document.getElementById(id).style.transform)"
        after, before = driver.execute_script(script)
        assert after == before
        x, y = re.match(r"translate\((-?[\d.]+)px, (-?[\d.]+)px\)", after).groups()  # type: ignore[union-attr]
        return float(x), float(y)

    stage = by_id(driver, "compare-stage")
    start = offset()
    # Drag from a point away from the split line: the photos follow the pointer.
    drag = ActionChains(driver).move_to_element_with_offset(stage, -stage.rect["width"] // 4, 0).click_and_hold()
    drag.move_by_offset(-30, -20).release().perform()
    moved = offset()
    assert (round(moved[0] - start[0]), round(moved[1] - start[1])) == (-30, -20), (start, moved)
    assert by_id(driver, "compare-after-clip").value_of_css_property("clip-path") == clip
    # On to the right: it stops at the photo's edge (the stage is never left empty).
    stage.send_keys(Keys.ARROW_RIGHT * 40)
    assert offset()[0] == pytest.approx(stage.rect["width"] - width, abs=1)
    stage.send_keys("++")  # 1.5 x 1.5 = 2.25 times the 100 % view, past which the pixels show as they are
    assert text_of(driver, "zoom-level") == "225 %"
    assert stage.get_attribute("data-pixels") == "true"
    screenshot(driver, "web-zoom.jpg")
    stage.send_keys("0")
    assert offset() == (0, 0) and text_of(driver, "zoom-level").startswith("Fit · ")


def open_compare(driver: WebDriver, index: int) -> None:
    """Opens the before/after view of the `index`th photo, its button scrolled to the middle of the window first
    (a toast at the bottom would otherwise take the click)."""
    button = tiles(driver)[index].find_element("css selector", ".compare-open")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    button.click()
