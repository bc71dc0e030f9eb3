"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright (no browser download). Log in with
a token, start a small run from the form, watch it go live to "succeeded", check the DAG, the trials chart and the
importance chart, open the report, and save a screenshot under test-artifacts/. The app runs under uvicorn in this
process (on the session's Ray cluster)."""
from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from api_support import TOKENS, free_port, wait_for
from playwright.sync_api import Browser, Page, expect, sync_playwright

from service.api import create_app
from service.demo import DemoWarehouse
from service.settings import Settings

pytestmark = [pytest.mark.browser, pytest.mark.ray]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PROMPT = "Build a churn model and tell me why users are leaving"


@pytest.fixture
def base_url(ray_cluster: Any, demo: DemoWarehouse, tokens_file: Path, tmp_path: Path) -> Iterator[str]:
    """The app under uvicorn on a free loopback port, for the length of one test."""
    settings = Settings(warehouse=demo.root, policies=demo.policies, run_store_url=f"sqlite:///{tmp_path / 'r.db'}",
                        artifacts=str(tmp_path / "artifacts"), tokens_file=tokens_file, ray_address=None,
                        runner="in-process",
                        llm_model=None)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=free_port(),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 60, "uvicorn never started")
    url = f"http://127.0.0.1:{server.config.port}"
    import httpx

    wait_for(lambda: httpx.get(f"{url}/readyz", timeout=5).status_code == 200, 90, "the API never became ready")
    yield url
    server.should_exit = True
    thread.join(60)


@pytest.fixture
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "install Debian's chromium (apt-get install -y chromium; .ci/run does it)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def log_in(page: Page, base_url: str, user: str) -> None:
    page.goto(f"{base_url}/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))  # no cookie yet: the dashboard asks for a token
    page.fill("#token", "not-a-token")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_be_visible()
    page.fill("#token", TOKENS[user])
    page.click("#login-form button[type=submit]")
    expect(page.locator("header .who")).to_contain_text(user)


def start_run(page: Page) -> str:
    page.fill("#prompt", PROMPT)
    page.fill("#max-trials", "3")
    page.fill("#max-rounds", "150")
    page.click("#start-run")
    page.wait_for_url(re.compile(r"/runs/[0-9a-f]+$"))
    return page.url.rsplit("/", 1)[1]


def test_dashboard_follows_a_run_live(browser: Browser, base_url: str) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    expected = "status of 401"  # log_in tries a wrong token first, on purpose
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" and expected not in msg.text
            else None)
    log_in(page, base_url, "ann")
    started = time.monotonic()
    run_id = start_run(page)

    # the page was rendered while the run was queued: what changes now comes over the event stream
    expect(page.locator("#dag g.node.st-running")).to_have_count(1, timeout=120_000)
    expect(page.locator("#events li").first).to_be_visible()
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=300_000)
    seconds = time.monotonic() - started

    steps = page.locator("#steps tbody tr").count()
    assert steps >= 5
    expect(page.locator("#dag g.node.st-succeeded")).to_have_count(steps)
    expect(page.locator("#dag path.edge").first).to_be_attached()
    expect(page.locator("#trials-chart svg")).to_be_visible()  # learning curves, ASHA stops marked
    expect(page.locator("#trials-chart table tbody tr")).to_have_count(3)
    expect(page.locator("#importance-chart svg")).to_be_visible()
    expect(page.locator("#run-metric")).to_contain_text("auc")
    expect(page.locator("#report-link")).to_be_visible()
    page.reload()  # the server-rendered page shows the same finished state, Ray dashboard link included
    expect(page.locator("#ray-link")).to_have_attribute("href", re.compile(r"^http://"))
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-run.png"), full_page=True)

    report = browser.new_page()
    report.context.add_cookies(page.context.cookies())  # type: ignore[arg-type]
    report.goto(f"{base_url}/v1/runs/{run_id}/report")
    expect(report.locator("h1")).to_contain_text("Churn")
    _runs_list_and_audit(page, base_url, run_id)
    assert not errors, errors
    print(f"\ndashboard run {run_id} succeeded in {seconds:.0f} s; screenshot {ARTIFACTS / 'dashboard-run.png'}")


def _runs_list_and_audit(page: Page, base_url: str, run_id: str) -> None:
    page.goto(f"{base_url}/")
    row = page.locator(f'#runs tr[data-run="{run_id}"]')
    expect(row.locator(".badge")).to_have_text("succeeded")
    expect(row.locator(".metric")).to_contain_text("auc")
    expect(page.locator("header nav")).not_to_contain_text("Audit log")  # ann is no admin
    page.click("#logout")
    log_in(page, base_url, "ada")
    page.goto(f"{base_url}/audit?user=ann")
    expect(page.locator("#audit tbody tr.v-allowed").first).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-audit.png"))
