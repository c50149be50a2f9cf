"""Rate limits: a fixed window per endpoint and wall-clock minute, headers on every API response."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from dispatcher.dev.sandbox.ratelimit import UNLIMITED, FixedWindowLimiter
from tests.helpers import SANDBOX_TOKEN, SandboxHandle

HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def sms(i: int) -> dict[str, Any]:
    return {"from": "Acme", "to": f"+34600{i:04d}00", "text": "hi", "clientId": f"rl-{i}"}


def away_from_a_minute_boundary(margin_s: float = 3.0) -> None:
    """Wait, if needed, until the current wall-clock minute has ``margin_s`` seconds left at least."""
    left = 60 - time.time() % 60
    if left < margin_s:
        time.sleep(left + 0.05)


def test_every_kind_of_api_response_carries_the_rate_limit_headers(api: httpx.Client,
                                                                   sandbox: SandboxHandle) -> None:
    sandbox.reset(balance=0.0)
    responses = {
        "201": api.post("/sms/bulk", json=[{**sms(0), "to": "bad"}]),
        "200": api.get("/sms"),
        "400": api.post("/sms/bulk", content=b"nope"),
        "401": sandbox.http.get("/sms"),
        "402": api.post("/sms/bulk", json=[sms(1)]),
        "404": api.get("/sms/unknown"),
        "405": api.delete("/sms"),
        "413": api.post("/sms/bulk", json=[sms(i) for i in range(101)]),
    }
    for expected, response in responses.items():
        assert str(response.status_code) == expected
        assert all(name in response.headers for name in HEADERS), expected


def test_with_no_limit_the_headers_announce_a_large_limit(api: httpx.Client) -> None:
    response = api.get("/organization/account")
    assert int(response.headers["x-ratelimit-limit"]) == UNLIMITED
    assert int(response.headers["x-ratelimit-remaining"]) == UNLIMITED - 1
    reset = int(response.headers["x-ratelimit-reset"])
    assert reset % 60 == 0 and 0 < reset - time.time() <= 60


def test_over_the_limit_a_request_is_429_with_an_empty_body_and_is_not_processed(
        start_own_sandbox: Callable[..., SandboxHandle]) -> None:
    own = start_own_sandbox("--rate-limit", "5")
    away_from_a_minute_boundary()
    with httpx.Client(base_url=own.url, headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"}) as client:
        allowed = [client.post("/sms/bulk", json=[sms(i)]) for i in range(5)]
        refused = client.post("/sms/bulk", json=[sms(5)])
        other_endpoint = client.get("/sms")
    assert [r.status_code for r in allowed] == [201] * 5
    assert [int(r.headers["x-ratelimit-remaining"]) for r in allowed] == [4, 3, 2, 1, 0]
    assert all(int(r.headers["x-ratelimit-limit"]) == 5 for r in allowed)
    assert refused.status_code == 429
    assert refused.content == b""
    assert "retry-after" not in refused.headers
    assert (refused.headers["x-ratelimit-limit"], refused.headers["x-ratelimit-remaining"]) == ("5", "0")
    reset = int(refused.headers["x-ratelimit-reset"])
    assert reset % 60 == 0 and 0 < reset - time.time() <= 60
    assert other_endpoint.status_code == 200
    assert [m["clientId"] for m in own.messages()] == [f"rl-{i}" for i in range(5)]
    assert own.stats()["rate_limited"] == 1


def test_both_path_prefixes_share_one_window_and_a_reset_clears_it(api: httpx.Client,
                                                                    sandbox: SandboxHandle) -> None:
    sandbox.reset(rate_limit_per_min=2)
    away_from_a_minute_boundary()
    assert api.get("/sms").status_code == 200
    assert api.get("/transactional/v1/sms/").status_code == 200
    assert api.get("/sms").status_code == 429
    assert api.get("/organization/account").status_code == 200
    sandbox.reset(rate_limit_per_min=2)
    assert api.get("/sms").status_code == 200


def test_a_refused_token_does_not_use_up_the_window(api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.reset(rate_limit_per_min=1)
    away_from_a_minute_boundary()
    for _ in range(3):
        assert sandbox.http.get("/sms").status_code == 401
    assert api.get("/sms").status_code == 200


def test_the_window_starts_over_at_each_wall_clock_minute() -> None:
    limiter = FixedWindowLimiter(2)
    assert [limiter.hit("GET /sms", 120.0 + t).allowed for t in (0, 1, 59.9)] == [True, True, False]
    verdict = limiter.hit("GET /sms", 180.0)
    assert (verdict.allowed, verdict.remaining, verdict.reset) == (True, 1, 240)
    assert limiter.hit("POST /sms", 181.0).remaining == 1
    assert limiter.peek("GET /sms", 181.0).remaining == 1
