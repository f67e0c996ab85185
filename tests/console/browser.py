"""A real headless Chromium (Debian's `chromium` and `chromedriver`), driven by Selenium.

Installed from Debian when missing and running as root on Debian; elsewhere the browser tests
are skipped with a note, unless WARDEN_REQUIRE_BROWSER=1 (CI), which makes that a failure.
Every wait is on an element or a URL, with generous timeouts: the machines are small and
busy. Each test keeps a screenshot of its last page under test-artifacts/console/.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.debian import apt_install, can_install

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "console"
WAIT_S = 60.0
PACKAGES = ["chromium", "chromium-driver"]


def _binaries() -> tuple[str | None, str | None]:
    return shutil.which("chromium"), shutil.which("chromedriver")


def _missing(why: str) -> None:
    if os.environ.get("WARDEN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"WARDEN_REQUIRE_BROWSER=1 but {why}")
    pytest.skip(f"browser tests skipped: {why} (apt-get install {' '.join(PACKAGES)})")


def find_chromium() -> tuple[str, str]:
    """Paths of chromium and chromedriver, installing Debian's packages as root if needed."""
    browser, driver = _binaries()
    if browser and driver:
        return browser, driver
    if not can_install():
        _missing("Debian's chromium and chromium-driver are not installed")
    failed = apt_install(*PACKAGES)
    if failed:
        _missing(failed)
    browser, driver = _binaries()
    if not (browser and driver):
        _missing("chromium or chromedriver is still missing after apt-get install")
    assert browser and driver
    return browser, driver


def start_chromium() -> Any:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("the selenium package is not installed (pip install -e '.[dev]')")
    browser, driver = find_chromium()
    # Offline: never let Selenium Manager look for (or download) a browser or driver.
    os.environ.setdefault("SE_OFFLINE", "true")
    os.environ.setdefault("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespaces for the sandbox
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1100",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
    ):
        options.add_argument(arg)
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    chrome.set_page_load_timeout(WAIT_S)
    chrome.set_script_timeout(WAIT_S)
    return chrome


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One browser for the module (starting one is slow on a busy machine)."""
    chrome = start_chromium()
    try:
        yield chrome
    finally:
        chrome.quit()


class Page:
    """The browser pointed at one live Warden, with the few moves the tests make."""

    def __init__(self, driver: Any, url: str) -> None:
        self.driver = driver
        self.url = url

    def wait(self, condition: Any, timeout: float = WAIT_S) -> Any:
        from selenium.common.exceptions import (
            NoSuchElementException,
            StaleElementReferenceException,
        )
        from selenium.webdriver.support.ui import WebDriverWait

        ignored = (NoSuchElementException, StaleElementReferenceException)
        waiting = WebDriverWait(self.driver, timeout, 0.1, ignored_exceptions=ignored)
        return waiting.until(condition)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec

        return self.wait(ec.presence_of_element_located((By.CSS_SELECTOR, css)))

    def all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def open(self, path: str) -> None:
        self.driver.get(self.url + path)
        self.find("main")

    def text(self) -> str:
        return str(self.find("body").text)

    def _mark(self) -> str:
        """Tag the current document, so the next one can be told from it."""
        marker = uuid.uuid4().hex
        self.driver.execute_script("window.__wardenMark = arguments[0];", marker)
        return marker

    def _new_page(self, marker: str) -> None:
        """Wait until a different document has loaded (the old one's nodes are gone)."""
        from selenium.common.exceptions import WebDriverException

        def loaded(driver: Any) -> bool:
            try:  # mid-navigation, the driver may answer with any error: not yet
                return bool(
                    driver.execute_script(
                        "return document.readyState === 'complete'"
                        " && window.__wardenMark !== arguments[0];",
                        marker,
                    )
                )
            except WebDriverException:
                return False

        self.wait(loaded)
        self.find("main")

    def submit_and_wait(self, button: Any, *, keys: bool = False) -> None:
        """Press a submit button (by mouse, or Enter when `keys`), then wait for the next page."""
        from selenium.webdriver.common.keys import Keys

        marker = self._mark()
        if keys:
            button.send_keys(Keys.ENTER)
        else:
            button.click()
        self._new_page(marker)

    def sign_in(self, token: str, path: str = "/console") -> None:
        """A fresh session: forget any cookie, then the sign-in form (typed, Enter to send)."""
        from selenium.webdriver.common.keys import Keys

        self.driver.get(self.url + "/console/sign-in")
        self.driver.delete_all_cookies()
        self.driver.get(f"{self.url}/console/sign-in?next={path}")
        field = self.find("#token")
        field.send_keys(token)
        marker = self._mark()
        field.send_keys(Keys.ENTER)
        self._new_page(marker)
        self.find("#signed-in-as")

    def sign_out(self) -> None:
        self.submit_and_wait(self.find(".who button"))
        self.find("#token")

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path
