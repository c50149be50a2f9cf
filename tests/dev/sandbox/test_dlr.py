"""Delivery reports and inbound messages, POSTed by the sandbox to a receiver this test runs."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from dispatcher.dev.services import free_port
from tests.helpers import SandboxHandle, wait_until

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
FAST = {"dlr_delay_s": 0.05}


class Receiver:
    """A webhook receiver in a thread: answers 500 to the first ``fail_first`` POSTs, then 200."""

    def __init__(self, fail_first: int = 0, port: int = 0) -> None:
        self.fail_first = fail_first
        self.attempts = 0
        self.reports: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.attempts += 1
                    failing = receiver.attempts <= receiver.fail_first
                    if not failing:
                        receiver.reports.append(json.loads(body))
                        receiver.paths.append(self.path)
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/dlr?secret=s3"
        # shutdown() waits for the loop's next poll: 0.5 s by default, after every test.
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01},
                                        daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """The reports once at least ``count`` arrived; fails after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.reports) >= count:
                    return list(self.reports)
            time.sleep(0.01)
        raise AssertionError(f"{len(self.reports)} of {count} reports arrived within {timeout_s} s")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def sms(i: int) -> dict[str, Any]:
    return {"from": "Acme", "to": f"+34600{i:04d}00", "text": "hi", "clientId": f"dlr-{i}"}


def send(api: httpx.Client, n: int) -> dict[str, str]:
    """Send ``n`` messages in one bulk; returns ``{clientId: id}``."""
    response = api.post("/sms/bulk", json=[sms(i) for i in range(n)])
    assert response.status_code == 201
    return {e["clientId"]: e["id"] for e in response.json()["entities"]}


def test_each_accepted_message_gets_one_delivered_report(api: httpx.Client, sandbox: SandboxHandle,
                                                         receiver: Receiver) -> None:
    sandbox.reset(dlr_url=receiver.url, **FAST)
    ids = send(api, 5)
    reports = receiver.wait_for(5)
    assert {r["clientId"]: r["id"] for r in reports} == ids
    for report in reports:
        assert set(report) == {"id", "clientId", "status", "code", "eventAt"}
        assert (report["status"], report["code"]) == ("delivered", 0)
        assert ISO_UTC.fullmatch(report["eventAt"])
    assert receiver.paths[0] == "/dlr?secret=s3"
    wait_until(lambda: sandbox.stats()["dlr_pending"] == 0)
    assert sandbox.stats()["dlr_sent"] == 5


@pytest.mark.parametrize(("option", "status"), [("dlr_failed_rate", "failed"), ("dlr_expired_rate", "expired")])
def test_a_share_of_reports_can_be_failed_or_expired_with_a_non_zero_code(
        api: httpx.Client, sandbox: SandboxHandle, receiver: Receiver, option: str, status: str) -> None:
    sandbox.reset(dlr_url=receiver.url, **FAST, **{option: 1.0})
    send(api, 3)
    reports = receiver.wait_for(3)
    assert {r["status"] for r in reports} == {status}
    assert all(r["code"] != 0 for r in reports)


def test_a_seeded_status_mix_has_every_status(api: httpx.Client, sandbox: SandboxHandle,
                                              receiver: Receiver) -> None:
    sandbox.reset(dlr_url=receiver.url, seed=3, dlr_failed_rate=0.3, dlr_expired_rate=0.3, **FAST)
    send(api, 60)
    statuses = [r["status"] for r in receiver.wait_for(60)]
    assert {"delivered", "failed", "expired"} == set(statuses)


def test_duplicated_reports_arrive_twice(api: httpx.Client, sandbox: SandboxHandle, receiver: Receiver) -> None:
    sandbox.reset(dlr_url=receiver.url, dlr_duplicate_rate=1.0, **FAST)
    ids = send(api, 3)
    reports = receiver.wait_for(6)
    assert sorted(r["id"] for r in reports) == sorted(list(ids.values()) * 2)


def test_early_reports_arrive_before_the_bulk_response(api: httpx.Client, sandbox: SandboxHandle,
                                                       receiver: Receiver) -> None:
    sandbox.reset(dlr_url=receiver.url, dlr_early_rate=1.0, dlr_delay_s=30)
    ids = send(api, 4)
    assert sorted(r["id"] for r in receiver.reports) == sorted(ids.values())  # no waiting: already there


def test_a_report_answered_with_an_error_is_retried(api: httpx.Client, sandbox: SandboxHandle) -> None:
    failing = Receiver(fail_first=2)
    try:
        sandbox.reset(dlr_url=failing.url, **FAST)
        ids = send(api, 1)
        [report] = failing.wait_for(1)
        assert report["id"] == ids["dlr-0"]
        assert failing.attempts == 3
        wait_until(lambda: sandbox.stats()["dlr_sent"] == 1)
        assert sandbox.stats()["dlr_retries"] == 2
    finally:
        failing.close()


def test_a_report_to_a_receiver_that_is_down_is_retried_until_it_is_up(api: httpx.Client,
                                                                        sandbox: SandboxHandle) -> None:
    port = free_port()
    sandbox.reset(dlr_url=f"http://127.0.0.1:{port}/dlr?secret=s3", **FAST)
    ids = send(api, 2)
    wait_until(lambda: sandbox.stats()["dlr_retries"] >= 2)
    late = Receiver(port=port)
    try:
        reports = late.wait_for(2)
        assert sorted(r["id"] for r in reports) == sorted(ids.values())
    finally:
        late.close()


def test_a_reset_drops_pending_reports(api: httpx.Client, sandbox: SandboxHandle, receiver: Receiver) -> None:
    sandbox.reset(dlr_url=receiver.url, dlr_delay_s=0.4)
    send(api, 3)
    assert sandbox.stats()["dlr_pending"] == 3
    sandbox.reset(dlr_url=receiver.url, dlr_delay_s=0.6)  # due after the dropped ones would have been
    assert sandbox.stats()["dlr_pending"] == 0
    ids = send(api, 1)
    receiver.wait_for(1)
    wait_until(lambda: sandbox.stats()["dlr_pending"] == 0)
    assert [r["id"] for r in receiver.reports] == [ids["dlr-0"]]


def test_no_reports_are_sent_without_a_dlr_url(api: httpx.Client, sandbox: SandboxHandle) -> None:
    send(api, 2)
    stats = sandbox.stats()
    assert (stats["dlr_pending"], stats["dlr_sent"]) == (0, 0)


@pytest.mark.parametrize(("message", "status"), [("STOP", "stop"), (" baja por favor", "stop"),
                                                 ("Thanks!", "received")])
def test_an_inbound_message_is_forwarded_to_the_receiver(sandbox: SandboxHandle, receiver: Receiver,
                                                         message: str, status: str) -> None:
    sandbox.reset(dlr_url=receiver.url)
    response = sandbox.http.post("/_sandbox/inbound", json={"from": "+34600000100", "to": "Acme",
                                                            "message": message, "clientId": "dlr-0"})
    assert response.status_code == 200
    assert response.json()["delivered"] is True
    [report] = receiver.reports
    assert {k: report[k] for k in ("from", "to", "message", "clientId", "status", "code")} == {
        "from": "+34600000100", "to": "Acme", "message": message, "clientId": "dlr-0", "status": status, "code": 0}
    assert report["id"] and ISO_UTC.fullmatch(report["eventAt"])
    assert sandbox.stats()["inbound_sent"] == 1


def test_an_inbound_message_needs_a_dlr_url_and_its_fields(sandbox: SandboxHandle, receiver: Receiver) -> None:
    body = {"from": "+34600000100", "to": "Acme", "message": "STOP"}
    assert sandbox.http.post("/_sandbox/inbound", json=body).status_code == 409
    sandbox.reset(dlr_url=receiver.url)
    assert sandbox.http.post("/_sandbox/inbound", json={**body, "message": ""}).status_code == 400
    assert sandbox.http.post("/_sandbox/inbound", json=["x"]).status_code == 400
    assert receiver.reports == []
