"""A real headless Chromium (the system's, driven through the system's chromedriver) and small page helpers."""

import io
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage
from pydantic_settings import BaseSettings, SettingsConfigDict
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait


class BrowserEnvironment(BaseSettings):
    """CI must run the browser tests (it installs Chromium); elsewhere they skip when it is missing. With
    SCREENSHOT_DIR set, the tests also save the README's screenshots there."""

    model_config = SettingsConfigDict(extra="ignore")
    ci: bool = False
    screenshot_dir: Path | None = None


BROWSER_ENV = BrowserEnvironment()

# Headless, as root, without a GPU, and without any of Chromium's own network traffic (updates, sync, ...).
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
    "--force-device-scale-factor=1",
)


def chromium_paths() -> tuple[str, str]:
    """The browser and its driver, from the system (never downloaded)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        if BROWSER_ENV.ci:
            pytest.fail("chromium and chromedriver are missing: .ci/run installs them (make browser)")
        pytest.skip("chromium/chromedriver not installed (make browser installs them)")
    return browser, driver


@contextmanager
def chromium(profile: Path, downloads: Path, width: int = 1280, height: int = 960) -> Iterator[WebDriver]:
    """A fresh browser with its own profile; downloads land in `downloads`."""
    browser, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 30) -> Any:
    """Wait until the condition returns something truthy (a browser-side poll, no fixed sleep)."""
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)


def by_id(driver: WebDriver, element_id: str) -> WebElement:
    return driver.find_element("id", element_id)


def text_of(driver: WebDriver, element_id: str) -> str:
    return by_id(driver, element_id).text


def screenshot(driver: WebDriver, name: str) -> None:
    """Save a screenshot for the docs when SCREENSHOT_DIR is set (a .jpg name for photo-heavy pages: smaller)."""
    if BROWSER_ENV.screenshot_dir is None:
        return
    BROWSER_ENV.screenshot_dir.mkdir(parents=True, exist_ok=True)
    with PILImage.open(io.BytesIO(driver.get_screenshot_as_png())) as image:
        image.convert("RGB").save(BROWSER_ENV.screenshot_dir / name, quality=85, optimize=True)
