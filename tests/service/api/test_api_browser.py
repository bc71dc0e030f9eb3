"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright (no browser download). Log in with
a token, start a small run from the form, watch it go live to "succeeded", check the DAG, the trials chart and the
importance chart, open the report, and save a screenshot under test-artifacts/. The app runs under uvicorn in this
process (on the session's Ray cluster)."""
from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from api_support import TOKENS, free_port, small_plan, wait_for
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
    # per-round validation metrics drawn while the model trains, before the run (explain, report) is done
    expect(page.locator("#live-chart polyline.live-line").first).to_be_attached(timeout=300_000)
    assert page.locator("#run-status").text_content() != "succeeded"
    screenshot(page, "live-run.png")
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=300_000)
    seconds = time.monotonic() - started

    steps = page.locator("#steps tbody tr").count()
    assert steps >= 5
    expect(page.locator("#dag g.node.st-succeeded")).to_have_count(steps)
    expect(page.locator("#dag path.edge").first).to_be_attached()
    expect(page.locator("#trials-chart svg")).to_be_visible()  # learning curves, ASHA stops marked
    expect(page.locator("#trials-chart table tbody tr")).to_have_count(3)
    expect(page.locator("#importance-chart svg")).to_be_visible()
    expect(page.locator("#run-metric")).to_contain_text("cross-validated auc (5-fold)")
    expect(page.locator("#run-metric")).to_contain_text("validation, used for tuning")
    assert int(page.locator("#live-chart polyline.live-line").first.get_attribute("data-points") or 0) >= 5
    expect(page.locator("#report-link")).to_be_visible()
    page.reload()  # the server-rendered page shows the same finished state, Ray dashboard link included
    expect(page.locator("#ray-link")).to_have_attribute("href", re.compile(r"^http://"))
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-run.png"), full_page=True)

    report = browser.new_page()
    report.context.add_cookies(page.context.cookies())  # type: ignore[arg-type]
    report.goto(f"{base_url}/v1/runs/{run_id}/report")
    expect(report.locator("h1")).to_contain_text("Churn")
    _artifacts(page, run_id)
    _compare(page, base_url, run_id)
    _runs_list_and_audit(page, base_url, run_id)
    assert not errors, errors
    print(f"\ndashboard run {run_id} succeeded in {seconds:.0f} s; screenshot {ARTIFACTS / 'dashboard-run.png'}")


def screenshot(page: Page, name: str) -> None:
    """Save a screenshot under test-artifacts/ (and under $AGENTML_SCREENS when set)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
    if os.environ.get("AGENTML_SCREENS"):
        Path(os.environ["AGENTML_SCREENS"]).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(os.environ["AGENTML_SCREENS"]) / name), full_page=True)


def _artifacts(page: Page, run_id: str) -> None:
    """The artifact browser lists the run's files by name (no server path) and downloads them with the cookie."""
    table = page.locator("#artifact-list")
    expect(table.locator('tbody tr[data-kind="model"]').first).to_be_visible()
    expect(table.locator('tbody tr[data-kind="report"]').first).to_be_visible()
    assert "file://" not in (table.text_content() or "") and "/tmp/" not in (table.text_content() or "")
    with page.expect_download() as info:
        table.locator('tbody tr[data-kind="model"] a').first.click()
    path = info.value.path()
    assert info.value.suggested_filename == "model.json" and path.stat().st_size > 1000
    assert '"learner"' in path.read_text()  # a real xgboost model


def _compare(page: Page, base_url: str, run_id: str) -> None:
    """A second, smaller training run; both ticked in the runs table and compared side by side."""
    import httpx

    second = httpx.post(f"{base_url}/v1/runs", json={"plan": small_plan(rounds=30, early_stopping=0)},
                        headers={"Authorization": f"Bearer {TOKENS['ann']}"}, timeout=60).json()["id"]
    wait_for(lambda: httpx.get(f"{base_url}/v1/runs/{second}", headers={"Authorization": f"Bearer {TOKENS['ann']}"},
                               timeout=30).json()["status"] == "succeeded", 300, "the second run did not succeed")
    page.goto(f"{base_url}/?sort=metric&order=desc")
    for rid in (run_id, second):
        page.locator(f'#runs tr[data-run="{rid}"] input.pick').check()
    screenshot(page, "runs-table.png")
    page.click("#compare-runs")
    page.wait_for_url(re.compile(r"/compare\?runs="))
    expect(page.locator("#compare-head thead th a")).to_have_count(2)
    expect(page.locator("#compare-params tr.differs").first).to_be_visible()  # e.g. the number of rounds
    expect(page.locator("#compare-metrics")).to_contain_text("validation auc")
    expect(page.locator("#compare-curves svg")).to_be_visible()  # both final models' curves overlaid
    expect(page.locator("#compare-importance svg")).to_be_visible()
    screenshot(page, "compare.png")


def _runs_list_and_audit(page: Page, base_url: str, run_id: str) -> None:
    page.goto(f"{base_url}/")
    row = page.locator(f'#runs tr[data-run="{run_id}"]')
    expect(row.locator(".badge")).to_have_text("succeeded")
    expect(row.locator(".metric")).to_contain_text("cross-validated auc")
    expect(page.locator(f'#runs tr.child[data-parent="{run_id}"]').first).to_be_hidden()  # its report run, nested
    row.locator("button.toggle").click()
    expect(page.locator(f'#runs tr.child[data-parent="{run_id}"]').first).to_be_visible()
    page.fill("#runs-q", "no run has these words")
    page.click("#runs-filter button[type=submit]")
    expect(page.locator("#runs tr.empty")).to_contain_text("No runs match")
    expect(page.locator("header nav")).not_to_contain_text("Audit log")  # ann is no admin
    page.click("#logout")
    log_in(page, base_url, "ada")
    page.goto(f"{base_url}/audit?user=ann")
    expect(page.locator("#audit tbody tr.v-allowed").first).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-audit.png"))
    page.goto(f"{base_url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("agentml")  # Swagger UI from our own files
