"""The dashboard explains itself and reports like a campaign tool, in a real browser (Debian's chromium
through playwright) against real processes: Redis, the sandbox, Celery workers, beat, the webhook and
``dispatcher console``.

Each campaign says what it waits for (no worker, its window, a pause) in words; the campaign page
carries the report (text, sender, delivery rate, actual cost, countries, undelivered codes); the
preflight shows what costs; the exports download; a schedule made in the dashboard fires. Screenshots
at 1,366 px and 420 px go to a temporary directory, or to ``docs/screenshots/`` with
``CONSOLE_SCREENSHOTS=docs``.
"""

from __future__ import annotations

import io
import os
import re
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import redis

from dispatcher.console.auth import TokenStore
from dispatcher.dev.services import (
    Service,
    free_port,
    http_ready,
    spawn,
    start_beat,
    start_webhook,
    start_worker,
    wait_until,
)
from dispatcher.keys import Keys
from dispatcher.settings import Settings
from tests.console.test_browser import Page, expect, launch, sync_playwright
from tests.console.test_browser import pytestmark as browser_marks
from tests.helpers import SandboxHandle, worker_env

ROOT = Path(__file__).resolve().parents[2]
SECRET = "browser-webhook-path-0123456789"
# Playwright's ViewportSize is a TypedDict of width and height (px).
WIDE: Any = {"width": 1366, "height": 900}
NARROW: Any = {"width": 420, "height": 900}
# The viewer sits in another zone than the recipients (Spain), so times show in both.
VIEWER_ZONE = "America/New_York"

# The same marks as test_browser: slow, and skipped without chromium or playwright.
pytestmark = browser_marks


@pytest.fixture()
def shots(tmp_path: Path) -> Path:
    if os.environ.get("CONSOLE_SCREENSHOTS") == "docs":
        target = ROOT / "docs" / "screenshots"
        target.mkdir(parents=True, exist_ok=True)
        return target
    return tmp_path


class Stack:
    """The console with an admin token; workers, beat and the webhook started on demand."""

    def __init__(self, settings: Settings, redis_client: redis.Redis, data_dir: Path) -> None:
        self.env = worker_env(settings, DISPATCHER_QUEUE_WINDOW=4, DISPATCHER_WEBHOOK_SECRET=SECRET,
                              DISPATCHER_HELD_RETRY=1, DISPATCHER_CONSOLE_DATA_DIR=str(data_dir))
        self.started: list[Service] = []
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        console = spawn("console", [sys.executable, "-m", "dispatcher", "console", "--port", str(port)], self.url,
                        env=self.env)
        self.started.append(console)
        wait_until(http_ready(f"{self.url}/healthz"), console, timeout_s=30)
        self.token = TokenStore(redis_client, Keys(settings.key_prefix)).create("browser", "admin")

    def worker(self) -> Service:
        service = start_worker(self.env, concurrency=2)
        self.started.append(service)
        return service

    def beat(self) -> Service:
        service = start_beat(self.env)
        self.started.append(service)
        return service

    def webhook(self) -> Service:
        service = start_webhook(self.env)
        self.started.append(service)
        return service

    def stop(self) -> None:
        for service in reversed(self.started):
            service.stop()


@pytest.fixture()
def stack(settings: Settings, redis_client: redis.Redis, sandbox: SandboxHandle, tmp_path: Path) -> Iterator[Stack]:
    handle = Stack(settings, redis_client, tmp_path / "console-data")
    try:
        yield handle
    finally:
        handle.stop()


def spanish_list(path: Path, rows: int = 24, unicode_rows: int = 2) -> Path:
    """A list of Spanish mobiles with a ``nombre`` column, two bad phones, and names that force Unicode."""
    lines = ["telefono,nombre,importe"]
    for i in range(rows):
        name = "Łukasz" if i < unicode_rows else f"Ana{i}"
        lines.append(f"+34 612 345 {i:03d},{name},{i}")
    lines += ["12,Nadie,1", ",Vacío,2"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture()
def browser_page() -> Iterator[Callable[..., Page]]:
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            def new_page(**options: Any) -> Page:
                context = browser.new_context(viewport=WIDE, timezone_id=VIEWER_ZONE, accept_downloads=True, **options)
                page = context.new_page()
                page.on("dialog", lambda dialog: dialog.accept())
                return page
            yield new_page
        finally:
            browser.close()


def sign_in(page: Page, stack: Stack) -> None:
    page.goto(stack.url)
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#nav")).to_be_hidden()  # the sign-in page shows no nav
    page.fill("#token", stack.token)
    page.click("#sign-in-form button")
    expect(page.locator("#campaigns")).to_be_visible()
    expect(page.locator("#nav")).to_be_visible()


def check_list(page: Page, path: Path, name: str, text: str = "Hola {nombre}, tu saldo es {importe}",
               **fields: str) -> None:
    page.click("[data-testid=nav-new]")
    page.set_input_files("#file", str(path))
    page.fill("#text", text)
    page.fill("#from", "Tienda")
    page.fill("#country", "ES")
    page.fill("#name", name)
    page.fill("#phone_column", "telefono")
    for field, value in fields.items():
        if field == "hlr":
            page.uncheck("#no_hlr")
        else:
            page.fill(f"#{field}", value)
    page.click("#check")
    expect(page.locator("#preflight")).to_be_visible(timeout=60_000)


def send(page: Page) -> str:
    page.click("#confirm")
    expect(page.locator("#upload-error")).to_have_text("")
    expect(page.locator("#campaign")).to_be_visible(timeout=30_000)  # a loaded machine loads slowly
    return page.url.rsplit("/", 1)[-1]


def shoot(page: Page, shots: Path, name: str) -> None:
    """A 1,366 px and a 420 px picture of the current view; neither scrolls sideways."""
    for size, suffix in ((WIDE, "wide"), (NARROW, "narrow")):
        page.set_viewport_size(size)
        page.wait_for_timeout(400)
        page.screenshot(path=str(shots / f"{name}-{suffix}.png"), full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1, f"{name} at {size['width']} px scrolls sideways by {overflow} px"
    page.set_viewport_size(WIDE)


def waiting(page: Page) -> Any:
    return expect(page.locator("[data-testid=waiting-for]"))


def test_a_campaign_without_a_worker_a_paused_one_and_one_waiting_for_its_window_each_say_why_in_words(
        stack: Stack, browser_page: Callable[..., Page], tmp_path: Path, shots: Path) -> None:
    page = browser_page()
    sign_in(page, stack)
    people = spanish_list(tmp_path / "clientes.csv")

    check_list(page, people, "sin-worker")
    idle = send(page)
    waiting(page).to_contain_text(re.compile(r"worker", re.I), timeout=15_000)
    expect(page.locator("#c-actions [data-action=resume]")).to_be_disabled()

    page.click("#c-actions [data-action=pause]")
    waiting(page).to_contain_text(re.compile(r"paused", re.I), timeout=15_000)
    waiting(page).to_contain_text("browser")  # by whom: the signed-in token's name
    expect(page.locator("#c-events")).to_contain_text("paused by browser")  # on the timeline too
    expect(page.locator("#c-actions [data-action=resume]")).to_be_enabled()

    stack.worker()
    madrid = datetime.now(ZoneInfo("Europe/Madrid"))
    opens = madrid + timedelta(hours=3)
    # Spanish mobiles may be in the Canaries, an hour behind: the window must overlap in both zones.
    closes = opens + timedelta(hours=4)
    check_list(page, people, "ventana", window=f"{opens:%H:%M}-{closes:%H:%M}", expire_after="12h")
    send(page)
    waiting(page).to_contain_text(re.compile(r"window", re.I), timeout=30_000)
    waiting(page).to_contain_text(re.compile(r"opens at .*\d\d:\d\d"))  # in the recipients' zone...
    waiting(page).to_contain_text("your time")  # ...and in the viewer's
    expect(page.locator("[data-testid=estimated-finish]")).to_contain_text("Estimated finish")
    expect(page.locator("#c-actions [data-action=resume]")).to_be_disabled()
    shoot(page, shots, "campaign-waiting")

    page.click("[data-testid=nav-campaigns]")
    expect(page.locator(f"[data-testid=waiting-{idle}]")).to_contain_text(re.compile("paused", re.I))
    expect(page.locator("#pace-note")).to_contain_text("the workers' limit")
    shoot(page, shots, "list")


def test_the_campaign_page_reports_text_sender_delivery_rate_cost_countries_and_undelivered_codes(
        stack: Stack, sandbox: SandboxHandle, browser_page: Callable[..., Page], tmp_path: Path,
        shots: Path) -> None:
    receiver = stack.webhook()
    sandbox.reset(dlr_url=f"{receiver.url}/dlr/{SECRET}", dlr_delay_s=0.05, dlr_failed_rate=0.3, seed=7)
    stack.worker()
    page = browser_page()
    sign_in(page, stack)
    people = spanish_list(tmp_path / "clientes.csv", rows=60, unicode_rows=3)

    check_list(page, people, "informe", hlr="1", keep_columns="nombre,importe")
    expect(page.locator("#pf-preview tbody tr")).to_have_count(5)
    expect(page.locator("#pf-preview")).to_contain_text("tu saldo es")  # rendered, not the template
    expect(page.locator("[data-testid=pf-unicode-note]")).to_contain_text("Unicode")
    expect(page.locator("#pf-unicode")).to_contain_text("Ł")
    expect(page.locator("#pf-parts")).to_contain_text("Parts per message")
    expect(page.locator("#pf-countries")).to_contain_text("ES")
    expect(page.locator("#pf-samples")).to_contain_text("12")
    expect(page.locator("[data-testid='pf-HLR cost']")).to_contain_text("EUR")
    total_cost = page.locator("[data-testid='pf-Total cost']").inner_text()
    assert re.fullmatch(r"[\d,]+\.\d\d EUR", total_cost), total_cost  # a total in EUR's two decimals
    shoot(page, shots, "preflight")
    page.check("#no_hlr")  # send without paying for lookups
    page.click("#check")
    expect(page.locator("#pf-totals")).to_contain_text(re.compile(r"HLR.*(none|would cost)"))
    cid = send(page)
    expect(page.locator("[data-testid=campaign-percent]")).to_have_text(re.compile(r"^100 % settled"),
                                                                        timeout=120_000)
    expect(page.locator("#c-undelivered tbody tr").first).not_to_contain_text("none", timeout=60_000)

    expect(page.locator("[data-testid=summary-Text]")).to_have_text("Hola {nombre}, tu saldo es {importe}")
    expect(page.locator("[data-testid=summary-Sender]")).to_have_text("Tienda")
    expect(page.locator("[data-testid='summary-Delivery rate']")).to_contain_text("% of reported")
    actual = page.locator("[data-testid='summary-Actual cost']").inner_text()
    assert re.fullmatch(r"[\d,]+\.\d\d EUR", actual), actual
    # Every message was sent in one part: what it cost is what was estimated, read after the end.
    estimated = page.locator("[data-testid='summary-Estimated cost']").inner_text()
    expect(page.locator("[data-testid='summary-Actual cost']")).to_have_text(estimated)
    expect(page.locator("#c-countries")).to_contain_text("ES")
    # Totals in EUR's two decimals, the unit price with up to four.
    spain = page.locator("#c-countries tbody tr").first.locator("td")
    expect(spain.nth(4)).to_have_text(re.compile(r"^0\.\d{2,4} EUR$"))  # unit price
    expect(spain.nth(6)).to_have_text(re.compile(r"^[\d,]+\.\d\d EUR$"))  # actual cost
    expect(page.locator("#c-undelivered thead")).to_contain_text("Code")
    expect(page.locator("#c-rejects")).to_contain_text("phone")
    page.wait_for_timeout(1500)  # the charts' last samples
    shoot(page, shots, "campaign")

    with page.expect_download() as download:
        page.click("#c-report-xlsx")
    report = pd.read_excel(io.BytesIO(Path(download.value.path()).read_bytes()), dtype=str)
    assert len(report) == 60 and {"report_code", "code"} & set(report.columns)
    with page.expect_download() as download:
        page.click("#c-rejects-csv")
    rejects = pd.read_csv(download.value.path(), dtype=str, keep_default_na=False)
    assert len(rejects) == 2 and set(rejects["reason"]) and cid
    assert {"nombre", "importe"} <= set(report.columns)  # the columns kept from the list


def test_delivery_reports_that_arrive_after_the_campaign_finished_still_reach_its_page(
        stack: Stack, sandbox: SandboxHandle, browser_page: Callable[..., Page], tmp_path: Path) -> None:
    """Reports come minutes after the last send: a finished campaign's summary must not be frozen
    at the moment it finished (it was: read once and kept)."""
    receiver = stack.webhook()
    sandbox.reset(dlr_url=f"{receiver.url}/dlr/{SECRET}", dlr_delay_s=3.0, dlr_failed_rate=1.0, seed=7)
    stack.worker()
    page = browser_page()
    sign_in(page, stack)
    check_list(page, spanish_list(tmp_path / "tarde.csv", rows=6, unicode_rows=0), "tarde")
    send(page)
    expect(page.locator("[data-testid=campaign-percent]")).to_have_text(re.compile(r"^100 % settled"),
                                                                        timeout=120_000)
    expect(page.locator("#c-undelivered tbody tr").first).to_contain_text("none")  # no report yet
    expect(page.locator("#c-undelivered tbody tr").first).not_to_contain_text("none", timeout=60_000)


def closed_window() -> str:
    """A four-hour send window opening three hours from now in Madrid (and so in the Canaries too)."""
    opens = datetime.now(ZoneInfo("Europe/Madrid")) + timedelta(hours=3)
    return f"{opens:%H:%M}-{opens + timedelta(hours=4):%H:%M}"


def test_a_schedule_made_in_the_dashboard_fires_and_is_edited_paused_and_removed_there(
        stack: Stack, browser_page: Callable[..., Page], tmp_path: Path, shots: Path) -> None:
    stack.worker()
    stack.beat()
    page = browser_page()
    sign_in(page, stack)
    page.click("[data-testid=nav-schedules]")
    page.fill("#sf-name", "diario")
    page.set_input_files("#sf-file", str(spanish_list(tmp_path / "diario.csv", rows=5)))
    page.fill("#sf-text", "Hola {nombre}")
    page.fill("#sf-every", "3s")
    page.fill("#sf-tz", "Europe/Madrid")
    page.fill("#sf-from", "Tienda")
    page.fill("#sf-country", "ES")
    window = closed_window()  # its campaign waits, so the schedule has a current campaign to ask about
    page.fill("#sf-window", window)
    page.fill("#sf-expire", "12h")
    page.click("#sf-save")
    expect(page.locator("#schedule-error")).to_have_text("")
    card = page.locator("[data-testid=schedule-diario]")
    expect(card).to_contain_text("Hola {nombre}")
    expect(card).to_contain_text(f"{window} (Europe/Madrid)")
    expect(card.locator("ul.events li")).to_have_count(5)  # the next runs
    firings = card.locator("table.list tbody tr")
    expect(firings.last.locator("td").nth(1)).to_have_text(re.compile("^(created|fired)$"), timeout=60_000)
    expect(card).to_contain_text("skipped", timeout=30_000)  # later firings skip: its campaign still runs

    page.click("[data-testid=edit-diario]")
    page.fill("#sf-text", "Buenos días {nombre}")
    page.click("#sf-save")
    expect(card).to_contain_text("Buenos días {nombre}")

    page.click("[data-testid=toggle-diario]")
    expect(card).to_contain_text("paused")
    expect(card).to_contain_text("none: the schedule is paused")
    shoot(page, shots, "schedules")

    current = card.locator("[data-testid='sched-diario-Current campaign']").inner_text().split()[0]
    page.click("[data-testid=remove-diario]")
    expect(page.locator("#remove-dialog")).to_be_visible()
    expect(page.locator("#rd-text")).to_contain_text(current)
    page.click("#rd-cancel")
    expect(card).to_have_count(0)
    answer = page.request.get(f"{stack.url}/api/campaigns/{current}").json()
    assert answer["state"] == "cancelled", answer
