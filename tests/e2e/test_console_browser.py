"""The web console in a real browser: Debian's headless Chromium, driven by Selenium through chromedriver,
against a real uvicorn server with the embedded defaults.

Scenario: sign in, create a collection, upload a real PDF, watch it reach ``indexed``, ask, follow a
citation to its highlighted sentence, follow up; as a reader, no upload control and a 403 when the form
is forced. A screenshot of each main page goes to ``RAG_CONSOLE_SCREENSHOTS`` (or the test's tmp dir).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from api.app import create_app
from core.config import Settings
from evaluation.datasets import load_dataset
from evaluation.in_process import ServicesTarget
from evaluation.runner import EvalOptions, run_eval
from runtime.services import Services
from tests.conftest import REPO, free_port
from tests.documents import text_pdf_bytes
from tests.services import missing_service

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ROOT_KEY = "console-browser-root-key"
WAIT_S = 180
PAGES = [
    [
        "Tidal power report.",
        "Tidal turbines convert the flow of seawater into electricity.",
        "The Rance tidal power station in France has produced electricity since 1966.",
        "Its barrage spans the estuary of the Rance river in Brittany.",
    ],
    [
        "Maintenance notes.",
        "Turbine blades are inspected every spring for corrosion by salt water.",
        "Sediment is flushed from the basin twice a year.",
    ],
]


@dataclass
class Console:
    url: str
    settings: Settings
    shots: Path


def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("RAG_CONSOLE_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("console-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    data = tmp_path_factory.mktemp("console-browser") / "data"
    settings = Settings(data_dir=data, llm_backend="none", api_key=ROOT_KEY, answer_mode="extractive", _env_file=None)
    # A real evaluation report (the project's own small set, every retrieval mode) for the evaluation page.
    services = Services(settings)
    try:
        options = EvalOptions(modes=("hybrid", "vector", "keyword"), progress=False)
        report = run_eval(
            ServicesTarget(services), load_dataset(REPO / "eval_sets" / "platform-docs"), "platform", options
        )
    finally:
        services.close()
    settings.eval_reports_path.mkdir(parents=True, exist_ok=True)
    (settings.eval_reports_path / "platform-docs.json").write_text(json.dumps(report, default=str))

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    yield Console(f"http://127.0.0.1:{port}", settings, screenshot_dir(tmp_path_factory))
    server.should_exit = True
    thread.join(timeout=60)


def chromium_driver() -> WebDriver:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()) and not shutil.which("chromium"):
        missing_service(f"Debian's chromium and chromium-driver are not installed ({CHROMIUM}, {CHROMEDRIVER})")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except WebDriverException as exc:
        missing_service(f"chromium did not start through {CHROMEDRIVER}: {exc.msg}")


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    driver = chromium_driver()
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: WebDriver, seconds: float = 30) -> WebDriverWait:
    """Polling tables are swapped while read: an element gone stale just means "look again"."""
    return WebDriverWait(driver, seconds, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,))


def shoot(driver: WebDriver, console: Console, name: str) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(800, min(int(height) + 40, 4000)))
    assert driver.save_screenshot(str(console.shots / f"{name}.png"))
    driver.set_window_size(1280, 1000)


def sign_in(driver: WebDriver, console: Console, key: str) -> None:
    driver.get(console.url + "/")
    field = wait(driver).until(ec.presence_of_element_located((By.ID, "api_key")))
    assert driver.current_url.endswith("/ui/login")
    field.send_keys(key)
    field.send_keys(Keys.ENTER)
    wait(driver).until(ec.url_contains("/ui/collections"))


def console_errors(driver: WebDriver) -> list[str]:
    """Console messages of level SEVERE (a CSP violation is one)."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def unlabeled_controls(driver: WebDriver) -> list[str]:
    """Every visible input, select, textarea and button needs an accessible name."""
    return driver.execute_script(
        """
        const missing = [];
        for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea, button')) {
          const named = (el.labels && el.labels.length) || el.getAttribute('aria-label') ||
                        (el.tagName === 'BUTTON' && el.textContent.trim());
          if (!named) missing.push(el.outerHTML.slice(0, 120));
        }
        return missing;
        """
    )


def test_upload_watch_ask_and_follow_a_citation(browser: WebDriver, console: Console, tmp_path: Path) -> None:
    sign_in(browser, console, ROOT_KEY)
    shoot(browser, console, "01-collections-empty")

    # Keyboard only: the skip link is the first stop, then the form creates a collection.
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert browser.switch_to.active_element.text == "Skip to content"
    name_field = browser.find_element(By.ID, "new-name")
    name_field.send_keys("tides", Keys.ENTER)
    wait(browser).until(ec.url_contains("/ui/collections/tides"))
    assert unlabeled_controls(browser) == []

    pdf = tmp_path / "tidal-report.pdf"
    pdf.write_bytes(text_pdf_bytes(PAGES))
    notes = tmp_path / "notes.txt"
    notes.write_text("The tide tables for Saint-Malo are published every year by the harbour office.\n")
    browser.find_element(By.ID, "files").send_keys(f"{pdf}\n{notes}")
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#uploads li[data-state=done]")) == 2)
    bars = browser.find_elements(By.CSS_SELECTOR, "#uploads progress")
    assert [b.get_attribute("value") for b in bars] == ["100", "100"]

    wait(browser, WAIT_S).until(
        lambda d: (
            [r.get_attribute("data-status") for r in d.find_elements(By.CSS_SELECTOR, "#documents tbody tr")]
            == ["indexed", "indexed"]
        )
    )
    row = browser.find_element(By.XPATH, "//tr[td[contains(., 'tidal-report.pdf')]]")
    assert row.find_element(By.CSS_SELECTOR, "td:nth-child(3)").text == "2"  # pages
    shoot(browser, console, "02-collection-indexed")

    browser.find_element(By.LINK_TEXT, "Ask this collection").click()
    question = wait(browser).until(ec.element_to_be_clickable((By.ID, "question")))
    question.send_keys("Since when has the Rance tidal power station produced electricity?", Keys.ENTER)
    answer = wait(browser, WAIT_S).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".turn .answer-text")))
    assert "1966" in answer.text
    citation = answer.find_element(By.CSS_SELECTOR, "a.cite")
    assert "conversation=" in browser.current_url
    citation.click()
    card = browser.find_element(By.ID, citation.get_attribute("hash")[1:])
    assert browser.switch_to.active_element == card
    chunk = card.find_element(By.CSS_SELECTOR, ".chunk").text
    marked = [m.text for m in card.find_elements(By.TAG_NAME, "mark")]
    assert any("1966" in m for m in marked) and all(m in chunk for m in marked), marked
    assert "1966" in browser.execute_script("return getSelection().toString() || arguments[0].textContent", card)
    header = card.find_element(By.TAG_NAME, "header").text
    assert "tidal-report.pdf" in header and "page 1" in header and "score" in header
    browser.find_element(By.CSS_SELECTOR, ".why summary").click()
    ranks = browser.find_elements(By.CSS_SELECTOR, ".why thead th")
    assert [r.text for r in ranks][1:4] == ["vector rank", "keyword rank", "fused rank"]
    shoot(browser, console, "03-ask-answer-with-sources")

    follow_up = browser.find_element(By.ID, "question")
    assert browser.find_element(By.CSS_SELECTOR, "label[for=question]").text == "Follow-up question"
    follow_up.send_keys("When are its turbine blades inspected?", Keys.ENTER)
    wait(browser, WAIT_S).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".turn .answer-text, .turn .abstained")) == 2
    )
    assert browser.find_elements(By.CSS_SELECTOR, ".turn .question")[-1].text.endswith("blades inspected?")

    browser.refresh()  # the conversation is kept on the server and comes back with the page
    assert len(wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".turn.past"))) == 2

    browser.find_element(By.LINK_TEXT, "New conversation").click()
    question = wait(browser).until(ec.element_to_be_clickable((By.ID, "question")))
    assert "conversation=" not in browser.current_url
    question.send_keys("What is the airspeed of an unladen swallow?", Keys.ENTER)
    abstained = wait(browser, WAIT_S).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".turn .abstained")))
    assert "No answer" in abstained.text
    assert not browser.find_elements(By.CSS_SELECTOR, ".turn .source")
    shoot(browser, console, "04-abstention")

    admin_pages(browser, console)
    assert console_errors(browser) == []


def admin_pages(browser: WebDriver, console: Console) -> None:
    browser.find_element(By.LINK_TEXT, "API keys").click()
    browser.find_element(By.ID, "key-name").send_keys("ops reader")
    browser.find_element(By.ID, "key-role").send_keys("reader")
    browser.find_element(By.ID, "key-collections").send_keys("tides")
    browser.find_element(By.XPATH, "//button[text()='Create key']").click()
    created = wait(browser).until(ec.presence_of_element_located((By.ID, "created-key"))).get_attribute("value")
    assert created.startswith("rag_")
    shoot(browser, console, "05-admin-keys-created")
    browser.get(console.url + "/ui/admin/keys")
    assert not browser.find_elements(By.ID, "created-key"), "a key is shown once"

    browser.find_element(By.LINK_TEXT, "Re-index").click()
    browser.find_element(By.CSS_SELECTOR, "button[aria-label='Re-index tides']").click()
    wait(browser, WAIT_S).until(ec.presence_of_element_located((By.CSS_SELECTOR, "#job-tides .job[data-status=done]")))
    progress = browser.find_element(By.CSS_SELECTOR, "#job-tides progress")
    assert progress.get_attribute("value") == progress.get_attribute("max") == "2"
    shoot(browser, console, "06-admin-reindex-done")

    browser.find_element(By.LINK_TEXT, "Query log").click()
    Select(browser.find_element(By.ID, "f-collection")).select_by_visible_text("tides")
    browser.find_element(By.XPATH, "//button[text()='Filter']").click()
    # The unfiltered page (the evaluation's queries) is on screen until the filtered one loads.
    wait(browser).until(ec.url_contains("collection=tides"))
    rows = wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "tbody tr td a"))
    assert len(rows) == 3
    assert browser.find_element(By.CSS_SELECTOR, "svg.chart title").get_attribute("textContent").startswith("Latency")
    shoot(browser, console, "07-admin-query-log")
    rows[-1].click()
    trace = wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, "dl.facts"))).text
    assert "Rance" in trace
    assert browser.find_elements(By.XPATH, "//h3[text()='fused']")
    shoot(browser, console, "08-admin-query-trace")

    browser.find_element(By.LINK_TEXT, "Evaluations").click()
    wait(browser).until(ec.url_contains("/admin/evaluations"))  # the trace page has a chart of its own
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert charts and charts[0].find_element(By.TAG_NAME, "title").get_attribute("textContent") == (
        "nDCG@10 per retrieval mode"
    )
    labels = [t.get_attribute("textContent") for t in charts[0].find_elements(By.CSS_SELECTOR, ".chart-label")]
    assert labels == ["hybrid", "vector", "keyword"]
    shoot(browser, console, "09-admin-evaluations")


def test_a_reader_has_no_upload_and_a_forced_post_is_refused(browser: WebDriver, console: Console) -> None:
    headers = {"Authorization": f"Bearer {ROOT_KEY}"}
    with httpx.Client(base_url=console.url, headers=headers) as api:
        api.post("/v1/collections", json={"name": "shared"})
        reader = api.post("/v1/admin/keys", json={"name": "browser reader", "role": "reader"}).json()["key"]
    sign_in(browser, console, reader)
    assert not browser.find_elements(By.ID, "new-name")
    browser.get(console.url + "/ui/collections/shared")
    wait(browser).until(ec.presence_of_element_located((By.ID, "documents")))
    assert not browser.find_elements(By.ID, "dropzone")
    assert not browser.find_elements(By.CSS_SELECTOR, "input[type=file]")
    shoot(browser, console, "10-reader-collection")
    status = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const form = new FormData();
        form.append('files', new Blob(['forced by a reader'], {type: 'text/plain'}), 'forced.txt');
        fetch('/ui/collections/shared/upload', {
          method: 'POST', body: form,
          headers: {'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content},
        }).then(r => done(r.status), e => done(String(e)));
        """
    )
    assert status == 403
    # The session cookie is out of the page's reach, and neither it nor the key is in web storage.
    assert browser.execute_script("return document.cookie") == ""
    stored = browser.execute_script(
        "return JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])"
    )
    [cookie] = [c for c in browser.get_cookies() if c["name"] == "rag_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert reader not in stored and cookie["value"] not in stored  # htmx keeps only the current path there
    assert reader not in browser.page_source
