"""The dashboard in a real browser (Debian's chromium through playwright) against real processes.

Redis, the sandbox, a Celery worker, Flower and ``dispatcher console`` all run as processes. The
test signs in, uploads the example list, reads the preflight, confirms, watches the bar reach
100 %, pauses and resumes a second campaign, downloads the report, and looks at Flower's task
list. Screenshots go to a temporary directory, or to ``docs/`` with ``CONSOLE_SCREENSHOTS=docs``.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import redis

from dispatcher.console.auth import TokenStore
from dispatcher.dev.services import Service, free_port, http_ready, spawn, start_flower, start_worker, wait_until
from dispatcher.keys import Keys
from dispatcher.settings import Settings
from tests.helpers import SandboxHandle, worker_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLOWER_LOGIN = ("flower", "test-flower-password")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the dev extras install it
    sync_playwright = None  # type: ignore[assignment]

if CHROMIUM is None:
    pytestmark = [pytestmark, pytest.mark.skip(reason="no chromium on PATH: apt-get install -y chromium")]
elif sync_playwright is None:
    pytestmark = [pytestmark, pytest.mark.skip(reason="playwright is not installed: pip install -e '.[dev]'")]


@pytest.fixture()
def shots(tmp_path: Path) -> Path:
    return ROOT / "docs" if os.environ.get("CONSOLE_SCREENSHOTS") == "docs" else tmp_path


@pytest.fixture()
def stack(settings: Settings, redis_client: redis.Redis, sandbox: SandboxHandle) -> Iterator[dict[str, Any]]:
    """A worker (with task events), Flower and the console, with an admin token."""
    env = worker_env(settings, DISPATCHER_QUEUE_WINDOW=4)
    started: list[Service] = []
    try:
        started.append(start_worker(env, concurrency=2, events=True))
        started.append(start_flower({**env, "FLOWER_BASIC_AUTH": ":".join(FLOWER_LOGIN)}))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        console = spawn("console", [sys.executable, "-m", "dispatcher", "console", "--port", str(port)], url, env=env)
        started.append(console)
        wait_until(http_ready(f"{url}/healthz"), console, timeout_s=30)
        token = TokenStore(redis_client, Keys(settings.key_prefix)).create("browser", "admin")
        yield {"console": url, "flower": started[1].url, "token": token}
    finally:
        for service in reversed(started):
            service.stop()


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def upload_example(page: Page, name: str) -> None:
    page.click("[data-testid=nav-new]")
    page.set_input_files("#file", str(ROOT / "examples" / "campaign.csv"))
    page.fill("#text", "Hola {name}, tu código {code}")
    page.fill("#from", "ACME")
    page.fill("#country", "ES")
    page.fill("#name", name)
    page.click("#check")
    expect(page.locator("#preflight")).to_be_visible(timeout=60_000)


def wait_done(page: Page) -> None:
    expect(page.locator("[data-testid=campaign-percent]")).to_have_text(re.compile(r"^100 % settled"),
                                                                        timeout=180_000)


def test_sign_in_upload_preflight_send_pause_resume_and_download_in_a_real_browser(
        stack: dict[str, Any], sandbox: SandboxHandle, shots: Path, tmp_path: Path) -> None:
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1360, "height": 900}, accept_downloads=True)
        page.goto(stack["console"])
        page.fill("#token", "not-a-token")
        page.click("#sign-in-form button")
        expect(page.locator("#sign-in-error")).to_contain_text("not valid")
        page.fill("#token", stack["token"])
        page.click("#sign-in-form button")
        expect(page.locator("#campaigns")).to_be_visible()

        upload_example(page, "spring")
        messages = int(page.locator("[data-testid='pf-Messages to send']").inner_text().replace(",", ""))
        assert messages > 2500
        assert int(page.locator("[data-testid='pf-Rejected rows']").inner_text().replace(",", "")) > 0
        assert page.locator("#pf-reasons tr").count() > 1  # the reject reasons are listed
        page.click("#confirm")
        expect(page.locator("#campaign")).to_be_visible()
        wait_done(page)
        expect(page.locator("#c-state")).to_have_text("completed")
        first = page.url.rsplit("/", 1)[-1]

        with page.expect_download() as download:
            page.click("#c-report")
        report = tmp_path / "report.csv"
        download.value.save_as(report)
        frame = pd.read_csv(report, dtype=str, keep_default_na=False)
        assert len(frame) == messages and set(frame["status"]) == {"sent"}

        flower = browser.new_page(viewport={"width": 1600, "height": 760},
                                  http_credentials={"username": FLOWER_LOGIN[0], "password": FLOWER_LOGIN[1]})
        flower_tasks(flower, stack["flower"], "spring", shots)

        sandbox.faults(latency_ms=400)  # slow enough to pause mid-way
        upload_example(page, "autumn")
        page.click("#confirm")
        expect(page.locator("#c-state")).to_have_text(re.compile("running|queued"))
        page.click("#c-actions [data-action=pause]")
        expect(page.locator("#c-state")).to_have_text("paused", timeout=30_000)
        settled_while_paused = page.locator("[data-testid=campaign-percent]").inner_text()
        assert not settled_while_paused.startswith("100 %")
        sandbox.faults(latency_ms=0)
        page.click("#c-actions [data-action=resume]")
        wait_done(page)
        expect(page.locator("#c-state")).to_have_text("completed")
        page.wait_for_timeout(1500)  # let the chart take its last samples before the picture
        page.screenshot(path=str(shots / "console-campaign.png"), full_page=True)

        page.click("[data-testid=nav-campaigns]")
        expect(page.locator(f"[data-testid=progress-{first}]")).to_have_text("100 %")
        page.screenshot(path=str(shots / "console.png"), full_page=True)

        browser.close()


def flower_tasks(page: Page, flower: str, name: str, shots: Path) -> None:
    """Flower lists the batch tasks by campaign name and batch, with the campaign in the result."""
    tasks = httpx.get(f"{flower}/api/tasks", params={"limit": 2000}, auth=FLOWER_LOGIN, timeout=30).json()
    names = {t["name"] for t in tasks.values()}
    assert any(re.fullmatch(rf"send_batch {name} #\d+", n or "") for n in names), sorted(names)[:5]
    results = [str(t.get("result")) for t in tasks.values() if (t.get("name") or "").startswith("send_batch")]
    assert any("'campaign'" in r and "'accepted'" in r for r in results), results[:3]
    page.goto(f"{flower}/tasks")
    expect(page.locator("table").get_by_text(re.compile(rf"send_batch {name} #")).first).to_be_visible(
        timeout=30_000)
    page.screenshot(path=str(shots / "flower.png"))
