"""The page in a real browser: headless Chromium (the system's package, driven by its chromedriver)
logs in, uploads a signed image with its manifest, sees the verdict, and leaves screenshots at
1280x800 and at phone width in test-artifacts/ui/ (or $MIMICSAFE_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from ownership.signatures import sign_manifest
from tests.ui.conftest import PASSWORDS, write_png

pytestmark = pytest.mark.browser

# Read at import: the suite's autouse fixture hides MIMICSAFE_* variables from the tests themselves.
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("MIMICSAFE_TEST_ARTIFACTS") or REPO / "test-artifacts") / "ui"
CHROMIUM = next(filter(None, (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")
WAIT_SECONDS = 60  # an upper bound for a slow machine, not a speed requirement


def shows(element_id: str, text: str):  # type: ignore[no-untyped-def]
    """A wait condition: the element's text holds `text`, however the page wraps it across lines."""
    def condition(driver: webdriver.Chrome) -> bool:
        found = driver.find_elements(By.ID, element_id)
        return bool(found) and text in "".join(found[0].text.split())
    return condition


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[webdriver.Chrome]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("no system Chromium/chromedriver (apt-get install chromium chromium-driver); "
                    "this test never downloads a browser")
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not fetch anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,800", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_window_size(1280, 800)
    try:
        yield driver
    finally:
        driver.quit()


def test_an_artist_logs_in_uploads_a_signed_image_and_sees_the_verdict(world, browser: webdriver.Chrome) -> None:
    picture = write_png(world.files, "browser-upload.png", 1, 20)
    manifest = world.files / "browser-manifest.json"
    manifest.write_bytes(sign_manifest(private_key_path_or_bytes=world.alice_key_private, artist="alice",
                                       files=[picture]))
    wait = WebDriverWait(browser, WAIT_SECONDS)

    browser.get(world.url + "/")
    wait.until(ready.url_contains("/login"))
    browser.find_element(By.ID, "username").send_keys("alice")
    browser.find_element(By.ID, "password").send_keys(PASSWORDS["alice"])
    browser.find_element(By.ID, "login").click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "header"), "signed in as alice"))
    assert browser.find_element(By.ID, "demo-banner").is_displayed()
    assert not [e for e in browser.find_elements(By.ID, "admin-area") if e.is_displayed()]  # artists see no admin tabs

    tab = next(b for b in browser.find_elements(By.CSS_SELECTOR, "button[role='tab']") if b.text.strip() == "Uploads")
    tab.click()
    browser.find_element(By.CSS_SELECTOR, "#upload-images input[type='file']").send_keys(str(picture))
    browser.find_element(By.CSS_SELECTOR, "#upload-signatures input[type='file']").send_keys(str(manifest))
    wait.until(shows("upload-images", picture.name))  # uploaded to the page
    wait.until(shows("upload-signatures", manifest.name))
    browser.find_element(By.ID, "upload-submit").click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "upload-verdicts"), "ACCEPTED"))
    verdict = browser.find_element(By.ID, "upload-verdicts").text
    assert "browser-upload.png — ACCEPTED" in verdict and "valid signature" in verdict
    wait.until(shows("uploads-table", "browser-upload.png"))

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "upload-verdict-1280x800.png"))
    browser.set_window_size(390, 844)
    wait.until(lambda d: d.execute_script("return window.innerWidth") <= 400)
    overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the page is {overflow} px wider than a phone screen"
    browser.execute_script("document.getElementById('upload-verdicts').scrollIntoView()")
    browser.save_screenshot(str(ARTIFACTS / "upload-verdict-390x844.png"))
    assert (ARTIFACTS / "upload-verdict-1280x800.png").stat().st_size > 10_000
