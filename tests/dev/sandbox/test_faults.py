"""Injected faults over real HTTP: errors before and after acceptance, held responses, throttling."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.helpers import SANDBOX_TOKEN, SandboxHandle


def sms(i: int) -> dict[str, Any]:
    return {"from": "Acme", "to": f"+34600{i:04d}00", "text": "hi", "clientId": f"fault-{i}"}


def test_an_injected_error_is_500_before_anything_is_accepted(api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.faults(error_rate=1.0)
    start = sandbox.stats()["balance"]
    bulk = api.post("/sms/bulk", json=[sms(0), sms(1)])
    single = api.post("/sms", json=sms(2))
    assert bulk.status_code == single.status_code == 500
    assert bulk.json()["message"]
    assert "x-ratelimit-limit" in bulk.headers
    assert sandbox.messages() == []
    stats = sandbox.stats()
    assert stats["balance"] == start
    assert (stats["errors_injected"], stats["errors_before_accept"], stats["accepted"]) == (2, 2, 0)


def test_an_error_after_acceptance_records_and_charges_the_messages_yet_answers_500(
        api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.faults(error_after_accept_rate=1.0)
    start = sandbox.stats()["balance"]
    response = api.post("/sms/bulk", json=[sms(0), sms(1)])
    assert response.status_code == 500
    assert [m["clientId"] for m in sandbox.messages()] == ["fault-0", "fault-1"]
    stats = sandbox.stats()
    assert stats["balance"] == pytest.approx(start - 2 * 0.045)
    assert (stats["errors_after_accept"], stats["accepted"]) == (1, 2)
    sandbox.faults(error_after_accept_rate=0.0)
    again = api.post("/sms/bulk", json=[sms(0)]).json()
    assert again["errors"][0]["errors"] == {"clientId": ["already used"]}


def test_a_timed_out_response_is_held_while_the_message_is_recorded(sandbox: SandboxHandle) -> None:
    sandbox.faults(timeout_rate=1.0, timeout_hold_s=0.6)
    headers = {"Authorization": f"Bearer {SANDBOX_TOKEN}"}
    with httpx.Client(base_url=sandbox.url, headers=headers, timeout=0.2) as impatient, \
            pytest.raises(httpx.ReadTimeout):
        impatient.post("/sms/bulk", json=[sms(0)])
    assert [m["clientId"] for m in sandbox.messages()] == ["fault-0"]
    with httpx.Client(base_url=sandbox.url, headers=headers, timeout=5) as patient:
        started = time.monotonic()
        response = patient.post("/sms", json=sms(1))
        held = time.monotonic() - started
    assert response.status_code == 201
    assert response.json()["entity"]["clientId"] == "fault-1"
    assert held >= 0.55
    assert sandbox.stats()["timeouts_injected"] == 2


def test_an_injected_throttle_is_429_with_an_empty_body_and_nothing_is_accepted(
        api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.faults(throttle_rate=1.0)
    response = api.post("/sms/bulk", json=[sms(0)])
    assert response.status_code == 429
    assert response.content == b""
    assert int(response.headers["x-ratelimit-reset"]) > time.time()
    assert sandbox.messages() == []
    stats = sandbox.stats()
    assert (stats["throttled_injected"], stats["rate_limited"]) == (1, 0)


def test_added_latency_delays_every_api_response(api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.faults(latency_ms=400)
    for call in (lambda: api.get("/organization/account"), lambda: api.post("/sms/bulk", json=[sms(0)])):
        started = time.monotonic()
        assert call().status_code in (200, 201)
        assert time.monotonic() - started >= 0.39
    started = time.monotonic()
    sandbox.stats()
    assert time.monotonic() - started < 0.3  # the control endpoints are not slowed


def test_send_faults_leave_the_other_endpoints_alone(api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.faults(error_rate=1.0, throttle_rate=1.0)
    assert api.get("/sms").status_code == 200
    assert api.post("/lookup", json={"to": "+34600000100"}).status_code == 201
    assert api.get("/organization/account").status_code == 200


def test_seeded_fault_dice_repeat_the_same_outcomes(api: httpx.Client, sandbox: SandboxHandle) -> None:
    def outcomes() -> list[int]:
        sandbox.reset(seed=42, faults={"error_rate": 0.5})
        return [api.post("/sms/bulk", json=[sms(i)]).status_code for i in range(30)]

    first = outcomes()
    assert first == outcomes()
    assert set(first) == {201, 500}


def test_faults_given_to_a_reset_apply_until_the_next_reset(api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.reset(faults={"error_rate": 1.0})
    assert api.post("/sms/bulk", json=[sms(0)]).status_code == 500
    sandbox.reset()
    assert api.post("/sms/bulk", json=[sms(0)]).status_code == 201


def test_a_lagging_listing_leaves_out_recently_accepted_messages_until_the_lag_is_over(
        api: httpx.Client, sandbox: SandboxHandle) -> None:
    assert api.post("/sms/bulk", json=[sms(0), sms(1)]).status_code == 201
    sandbox.faults(list_lag_s=3600.0)
    lagging = api.get("/sms", params=[("clientId", "fault-0"), ("clientId", "fault-1")])
    assert lagging.status_code == 200 and lagging.json()["entities"] == []
    sandbox.faults(list_lag_s=0.0)
    caught_up = api.get("/sms", params=[("clientId", "fault-0"), ("clientId", "fault-1")])
    assert sorted(e["clientId"] for e in caught_up.json()["entities"]) == ["fault-0", "fault-1"]
