"""The ``/_sandbox/*`` endpoints: reset, faults, stats, the message list and the request log."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.helpers import SandboxHandle

STARTING_BALANCE = 100000.0


def sms(i: int) -> dict[str, Any]:
    return {"from": "Acme", "to": f"+34600{i:04d}00", "text": "hi", "clientId": f"ctl-{i}"}


def test_stats_report_every_counter_the_tests_rely_on(api: httpx.Client, sandbox: SandboxHandle) -> None:
    api.post("/sms/bulk", json=[sms(0), {**sms(1), "to": "x"}])
    api.post("/lookup", json={"to": "+34600000100"})
    stats = sandbox.stats()
    for name in ("accepted", "rejected", "duplicate_submissions", "rate_limited", "requests", "balance",
                 "errors_injected", "dlr_sent", "dlr_retries", "lookups"):
        assert name in stats, name
    assert (stats["accepted"], stats["rejected"], stats["requests"], stats["lookups"]) == (1, 1, 2, 1)
    assert stats["balance"] == pytest.approx(STARTING_BALANCE - 0.045 - 0.004)
    assert sandbox.http.get("/_sandbox/stats/").json()["accepted"] == 1


def test_a_reset_forgets_messages_lookups_stats_and_the_request_log(api: httpx.Client,
                                                                     sandbox: SandboxHandle) -> None:
    sms_id = api.post("/sms/bulk", json=[sms(0)]).json()["entities"][0]["id"]
    lookup_id = api.post("/lookup", json={"to": "+34600000100"}).json()["entity"]["id"]
    sandbox.reset()
    assert sandbox.messages() == []
    assert sandbox.http.get("/_sandbox/requests").json() == {"requests": []}
    stats = sandbox.stats()
    assert (stats["accepted"], stats["requests"], stats["lookups"], stats["balance"]) == (0, 0, 0, STARTING_BALANCE)
    assert api.get(f"/sms/{sms_id}").status_code == 404
    assert api.get(f"/lookup/{lookup_id}").status_code == 404
    assert api.post("/sms/bulk", json=[sms(0)]).json()["errors"] == []  # the clientId is free again


def test_reset_overrides_last_until_the_next_reset(sandbox: SandboxHandle) -> None:
    response = sandbox.http.post("/_sandbox/reset", json={"balance": 5, "currency": "USD",
                                                          "unpriced_countries": ["fr"]})
    assert response.status_code == 200
    config = response.json()["config"]
    assert (config["balance"], config["currency"], config["unpriced_countries"]) == (5.0, "USD", ["FR"])
    assert "token" not in config
    assert sandbox.stats()["balance"] == 5.0
    sandbox.reset()
    config = sandbox.http.get("/_sandbox/config").json()
    assert (config["balance"], config["currency"], config["unpriced_countries"]) == (STARTING_BALANCE, "EUR", [])
    assert config["rate_limit_per_min"] == 0


def test_a_reset_with_an_empty_body_is_accepted(sandbox: SandboxHandle) -> None:
    assert sandbox.http.post("/_sandbox/reset").status_code == 200


@pytest.mark.parametrize("body", [{"nope": 1}, {"balance": "lots"}, {"enforce_unique_client_id": "yes"},
                                  {"faults": {"error_rate": "x"}}, {"faults": {"unknown": 1}}, [1, 2]])
def test_a_reset_with_an_unknown_field_or_a_bad_value_is_400_and_changes_nothing(
        api: httpx.Client, sandbox: SandboxHandle, body: Any) -> None:
    api.post("/sms/bulk", json=[sms(0)])
    response = sandbox.http.post("/_sandbox/reset", json=body)
    assert response.status_code == 400
    assert response.json()["message"]
    assert len(sandbox.messages()) == 1


def test_faults_change_at_run_time_and_are_read_back(sandbox: SandboxHandle) -> None:
    response = sandbox.http.post("/_sandbox/faults", json={"error_rate": 0.25, "latency_ms": 5})
    assert response.status_code == 200
    faults = response.json()
    assert (faults["error_rate"], faults["latency_ms"], faults["timeout_rate"]) == (0.25, 5.0, 0.0)
    assert sandbox.http.get("/_sandbox/faults").json() == faults
    assert sandbox.http.post("/_sandbox/faults", json={"timeout_rate": 0.1}).json()["error_rate"] == 0.25


@pytest.mark.parametrize("body", [{"error_rate": 1, "bogus": 2}, {"error_rate": "high"}, ["error_rate"]])
def test_faults_with_an_unknown_field_or_a_bad_value_are_400(sandbox: SandboxHandle, body: Any) -> None:
    response = sandbox.http.post("/_sandbox/faults", json=body)
    assert response.status_code == 400
    assert sandbox.http.get("/_sandbox/faults").json()["error_rate"] == 0.0


def test_the_message_list_pages_with_offset_and_limit(api: httpx.Client, sandbox: SandboxHandle) -> None:
    before = time.time()
    api.post("/sms/bulk", json=[sms(i) for i in range(5)])
    everything = sandbox.messages()
    assert [m["clientId"] for m in everything] == [f"ctl-{i}" for i in range(5)]
    first = everything[0]
    assert set(first) >= {"id", "clientId", "to", "text", "parts", "price", "submissions", "accepted", "acceptedAt"}
    assert before <= first["acceptedAt"] <= time.time()
    page = sandbox.http.get("/_sandbox/messages", params={"offset": 1, "limit": 2}).json()["messages"]
    assert [m["clientId"] for m in page] == ["ctl-1", "ctl-2"]


def test_the_request_log_has_one_row_per_api_request(api: httpx.Client, sandbox: SandboxHandle) -> None:
    before = time.time()
    api.post("/sms/bulk", json=[sms(0), sms(1), sms(2)])
    api.get("/transactional/v1/sms/")
    sandbox.http.get("/organization/account")
    sandbox.stats()  # control endpoints are not logged
    rows = sandbox.http.get("/_sandbox/requests").json()["requests"]
    assert [(r["endpoint"], r["status"], r["items"]) for r in rows] == [
        ("POST /sms/bulk", 201, 3), ("GET /sms", 200, 0), ("GET /organization/account", 401, 0)]
    times = [r["t"] for r in rows]
    assert before <= times[0] <= times[1] <= times[2] <= time.time()
    since = sandbox.http.get("/_sandbox/requests", params={"since": times[1]}).json()["requests"]
    assert [r["endpoint"] for r in since] == ["GET /sms", "GET /organization/account"]
    limited = sandbox.http.get("/_sandbox/requests", params={"offset": 1, "limit": 1}).json()["requests"]
    assert [r["endpoint"] for r in limited] == ["GET /sms"]
