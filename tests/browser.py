"""Headless Chromium from Debian's packages (``chromium``, ``chromium-driver``), driven over WebDriver by
Selenium, for the tests that look at the Airflow UI as a person does. No browser is downloaded: the
driver and the browser are the system's, and Selenium's own driver manager is never asked."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("KLING_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))
"""Where the browser tests keep their screenshots (kept after the run, for people to look at)."""
WAIT = 60.0

T = TypeVar("T")

# Chromium's own connections to the outside (updates, sync, safe browsing, ...) stay off: the tests talk to
# loopback only.
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--metrics-recording-only",
    "--window-size=1400,1000",
]


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium session, closed (and its profile removed) at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if missing:
        pytest.fail(f"{missing} not found: apt-get install -y chromium chromium-driver (.ci/run does)")
    profile = tempfile.mkdtemp(prefix="kling-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def log_in(driver: Any, api: str, username: str, password: str) -> None:
    """Sign in on the simple auth manager's page, as a person does."""
    from selenium.webdriver.common.by import By

    driver.get(f"{api}/")
    wait_for(lambda: driver.find_elements(By.NAME, "username"), "the login form")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(lambda: "_token" in {cookie["name"] for cookie in driver.get_cookies()}, "the session cookie")


def wait_for(check: Callable[[], T], what: str, limit: float = WAIT) -> T:
    """Poll ``check`` until it returns something true; fail naming ``what`` after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as error:  # the page is still changing (stale element, not there yet)
            last = error
        time.sleep(0.25)
    pytest.fail(f"waited {limit:.0f} s for {what}" + (f" (last error: {last!r})" if last else ""))


def replace_text(field: Any, text: str, what: str) -> None:
    """Replace a form field's whole value with ``text`` as a person does (select all, type), and wait until the
    field shows exactly ``text``; a React form that renders again while keys arrive gets them again."""
    from selenium.webdriver.common.keys import Keys

    def typed() -> bool:
        if field.get_attribute("value") != text:
            field.send_keys(Keys.CONTROL, "a")
            field.send_keys(text)
        return bool(field.get_attribute("value") == text)

    wait_for(typed, f"{what} to read {text!r}", limit=10)


def screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def buttons(driver: Any, text: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return [button for button in driver.find_elements(By.TAG_NAME, "button") if button.text.strip() == text]
