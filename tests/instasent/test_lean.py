"""Requests with a deadline skip httpx's client layer (``dispatcher.instasent.lean``) and behave
exactly as through httpx: same results, same errors, same bookkeeping, over real sockets."""

from __future__ import annotations

import gzip
import logging
import re
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from dispatcher.dev.services import free_port
from dispatcher.errors import AuthenticationFailed, ConnectionFailed, DispatcherError, OutcomeUnknown
from dispatcher.instasent.client import InstasentClient
from dispatcher.instasent.models import wire_item
from dispatcher.settings import Settings
from tests.conftest import SANDBOX_TOKEN, SandboxHandle
from tests.instasent.conftest import Answerer, CannedServer, http_answer

CANARY = "tok-LEAKCANARY-9f3e"
EMPTY = http_answer(201, b'{"entities": [], "errors": []}', "Content-Type: application/json")
Start = Callable[[Answerer], CannedServer]


def soon(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


def bulk(n: int, prefix: str = "l") -> list[dict[str, Any]]:
    return [wire_item("Acme", f"+34600{i:04d}00", f"Hello {i}", f"{prefix}-{i:04d}") for i in range(n)]


def no_httpx(client: InstasentClient) -> InstasentClient:
    """``client``, failing any request that would go through httpx's client layer."""
    def refuse(*args: object, **kwargs: object) -> httpx.Response:
        raise AssertionError("this request went through httpx")
    client._http.send = refuse  # type: ignore[method-assign]
    return client


def assert_no_token(exc: BaseException, token: str = CANARY) -> None:
    text = "".join(traceback.format_exception(exc))
    assert token not in str(exc) and token not in repr(exc) and token not in text
    assert "LEAKCANARY" not in text


@pytest.fixture()
def clients(settings: Settings) -> Iterator[Callable[..., InstasentClient]]:
    """Make clients on the sandbox, the lean one refusing to go through httpx; closed after the test."""
    made: list[InstasentClient] = []

    def make(lean: bool, token: str = SANDBOX_TOKEN) -> InstasentClient:
        client = InstasentClient(token=token, base_url=settings.instasent_base_url, lean=lean)
        made.append(client)
        return no_httpx(client) if lean else client

    yield make
    for client in made:
        client.close()


# -- the same results as httpx ------------------------------------------------------------------
def _outcome(client: InstasentClient, items: list[dict[str, Any]], token: str) -> dict[str, Any]:
    """What a bulk with a deadline came to, in terms that do not depend on ids or the clock."""
    answers: list[tuple[str, int]] = []
    client.on_answer(lambda endpoint, status: answers.append((endpoint, status)))
    try:
        result = client.send_bulk_wire(items, deadline=soon())
        got: Any = (sorted(result.accepted), result.rejected)
    except DispatcherError as exc:
        assert_no_token(exc, token)
        message = re.sub(r"until \d\d:\d\d:\d\d", "until <time>", str(exc))
        got = (type(exc).__name__, message, getattr(exc, "status", None), exc.maybe_processed)
    limits = {endpoint: (info.limit, info.remaining > 0) for endpoint, info in client.rate_limits.items()}
    return {"got": got, "answers": answers, "rate_limits": limits}


SCENARIOS: dict[str, tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]], str]] = {
    # name: (sandbox config, faults, items, token)
    "accepted and rejected items": ({}, {}, [*bulk(3), wire_item("Acme", "+34123", "x", "bad-to"),
                                             wire_item("WayTooLongSender", "+34600999900", "x", "bad-from")],
                                    SANDBOX_TOKEN),
    "401": ({}, {}, bulk(2), "wrong-" + CANARY),
    "402": ({"balance": 0.01}, {}, bulk(2), SANDBOX_TOKEN),
    "429 with rate-limit headers": ({}, {"throttle_rate": 1.0}, bulk(2), SANDBOX_TOKEN),
    "413": ({}, {}, [wire_item("Acme", f"+34600{i:04d}00", "a" * 42_000, f"big-{i}") for i in range(100)],
            SANDBOX_TOKEN),
    "500": ({}, {"error_rate": 1.0}, bulk(2), SANDBOX_TOKEN),
}


@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_the_lean_path_gives_the_same_outcome_as_httpx_against_the_sandbox(
        scenario: tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]], str],
        clients: Callable[..., InstasentClient], sandbox: SandboxHandle) -> None:
    config, faults, items, token = scenario
    outcomes = []
    for lean in (True, False):
        sandbox.reset(**config)
        if faults:
            sandbox.faults(**faults)
        outcomes.append(_outcome(clients(lean, token), items, token))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0]["answers"] and outcomes[0]["answers"][0][0] == "POST /sms/bulk"
    assert "POST /sms/bulk" in outcomes[0]["rate_limits"]


def test_a_request_with_a_deadline_takes_the_lean_path_and_keeps_its_rate_limits(
        clients: Callable[..., InstasentClient], sandbox: SandboxHandle) -> None:
    client = clients(True)
    assert client._lean is not None
    result = client.send_bulk_wire(bulk(3), deadline=soon())
    assert len(result.accepted) == 3 and result.rejected == {}
    assert {m["clientId"] for m in sandbox.messages()} == set(result.accepted)
    assert client.rate_limits["POST /sms/bulk"].reset > 0
    found = client.search_client_ids(list(result.accepted), deadline=soon())
    assert found.complete and {cid: sms.id for cid, sms in found.found.items()} == result.accepted


def test_a_body_that_is_not_json_is_an_unknown_outcome_on_both_paths(canned_server: Start) -> None:
    server = canned_server(lambda request: http_answer(201, b"<html>oops</html>", "Content-Type: text/html"))
    errors = []
    for lean in (True, False):
        with InstasentClient(token=CANARY, base_url=server.url, lean=lean) as client:
            with pytest.raises(OutcomeUnknown) as info:
                client.send_bulk_wire(bulk(1), deadline=soon())
            assert_no_token(info.value)
            errors.append((str(info.value), info.value.status))
    assert errors[0] == errors[1]
    assert errors[0][0] == "Instasent answered POST /sms/bulk with a body that is not JSON."


def test_a_lean_request_is_on_the_wire_what_httpx_sends(canned_server: Start) -> None:
    server = canned_server(lambda request: http_answer(200, b'{"entities": [], "errors": []}'))
    for lean in (True, False):
        with InstasentClient(token=CANARY, base_url=server.url + "/transactional/v1/", lean=lean) as client:
            client.send_bulk_wire(bulk(2), deadline=soon())
            client.search_client_ids(["a b", "c+d/é", "e&f=g"], max_pages=1, deadline=soon())
    lean_requests, httpx_requests = server.requests[:2], server.requests[2:]

    def parts(request: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
        head, _, body = request.partition(b"\r\n\r\n")
        line, *lines = head.split(b"\r\n")
        headers = dict(tuple(part.strip() for part in h.split(b":", 1)) for h in lines)
        headers = {name.lower(): value for name, value in headers.items()}
        return line, headers, body

    for mine, theirs in zip(lean_requests, httpx_requests, strict=True):
        (line, headers, body), (their_line, their_headers, their_body) = parts(mine), parts(theirs)
        assert (line, body) == (their_line, their_body)
        assert headers.pop(b"accept-encoding") == b"identity"
        assert their_headers.pop(b"accept-encoding").startswith(b"gzip")
        their_headers.pop(b"connection")
        assert headers == their_headers
    assert parts(lean_requests[0])[0] == b"POST /transactional/v1/sms/bulk HTTP/1.1"
    assert parts(lean_requests[1])[0].startswith(b"GET /transactional/v1/sms?page=1&per_page=100&clientId=a+b&")


def test_a_compressed_answer_is_decoded_and_a_corrupt_one_cannot_be_read(canned_server: Start) -> None:
    body = gzip.compress(orjson.dumps({"entities": [{"id": "s1", "clientId": "l-0000"}], "errors": []}))
    good = canned_server(lambda request: http_answer(201, body, "Content-Encoding: gzip"))
    bad = canned_server(lambda request: http_answer(201, b"not gzip at all", "Content-Encoding: gzip"))
    with InstasentClient(token=CANARY, base_url=good.url) as client:
        assert no_httpx(client).send_bulk_wire(bulk(1), deadline=soon()).accepted == {"l-0000": "s1"}
    errors = []
    for lean in (True, False):
        with InstasentClient(token=CANARY, base_url=bad.url, lean=lean) as client:
            with pytest.raises(OutcomeUnknown) as info:
                client.send_bulk_wire(bulk(1), deadline=soon())
            errors.append(str(info.value))
    assert errors[0] == errors[1] == "the answer to POST /sms/bulk could not be read (DecodingError)."


def test_the_token_never_reaches_the_logs_of_a_lean_exchange(clients: Callable[..., InstasentClient],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "dispatcher"):
        caplog.set_level(logging.DEBUG, logger=name)
    client = clients(True)
    client.send_bulk_wire(bulk(2), deadline=soon())
    with pytest.raises(AuthenticationFailed):
        clients(True, "wrong-" + CANARY).send_bulk_wire(bulk(1), deadline=soon())
    assert any(r.name.startswith("dispatcher") for r in caplog.records), "the exchange should log at DEBUG"
    assert SANDBOX_TOKEN not in caplog.text and "LEAKCANARY" not in caplog.text


# -- failures -----------------------------------------------------------------------------------
def test_an_answer_held_past_the_deadline_is_an_unknown_outcome_by_the_deadline(
        clients: Callable[..., InstasentClient], sandbox: SandboxHandle) -> None:
    sandbox.faults(timeout_rate=1.0, timeout_hold_s=3)
    client = clients(True)
    started = time.monotonic()
    with pytest.raises(OutcomeUnknown, match="deadline") as info:
        client.send_bulk_wire(bulk(2), deadline=started + 0.5)
    assert time.monotonic() - started < 0.8
    assert info.value.maybe_processed is True
    assert_no_token(info.value, SANDBOX_TOKEN)


def test_a_trickling_answer_is_cut_at_the_deadline_on_the_lean_path(trickling_server: str) -> None:
    with InstasentClient(token=CANARY, base_url=trickling_server) as client:
        started = time.monotonic()
        with pytest.raises(OutcomeUnknown, match="deadline") as info:
            no_httpx(client).send_bulk_wire(bulk(1), deadline=started + 0.4)
        assert time.monotonic() - started < 0.6
        assert_no_token(info.value)


def test_a_refused_connection_means_nothing_was_sent() -> None:
    with (InstasentClient(token=CANARY, base_url=f"http://127.0.0.1:{free_port()}") as client,
          pytest.raises(ConnectionFailed, match="nothing was sent") as info):
        no_httpx(client).send_bulk_wire(bulk(1), deadline=soon())
    assert info.value.maybe_processed is False
    assert_no_token(info.value)


def test_a_connection_closed_after_the_request_was_read_is_an_unknown_outcome(canned_server: Start) -> None:
    server = canned_server(lambda request: None)
    with (InstasentClient(token=CANARY, base_url=server.url) as client,
          pytest.raises(OutcomeUnknown, match="may have been processed") as info):
        no_httpx(client).send_bulk_wire(bulk(1), deadline=soon())
    assert info.value.maybe_processed is True
    assert server.requests and CANARY.encode() in server.requests[0]  # it was sent, with the token
    assert_no_token(info.value)


def test_a_body_cut_short_is_an_unknown_outcome_and_its_connection_is_not_reused(canned_server: Start) -> None:
    cut = b"HTTP/1.1 201 Created\r\nContent-Length: 100\r\nConnection: close\r\n\r\n" + b'{"entities": ['
    answers = iter([cut, EMPTY])
    server = canned_server(lambda request: next(answers))
    with InstasentClient(token=CANARY, base_url=server.url) as client:
        with pytest.raises(OutcomeUnknown, match="may have been processed") as info:
            no_httpx(client).send_bulk_wire(bulk(1), deadline=soon())
        assert_no_token(info.value)
        assert client._lean is not None and client._lean.idle_connections == 0
        client.send_bulk_wire(bulk(1), deadline=soon())
    assert server.connections == 2


def test_two_sequential_bulks_share_one_kept_alive_connection(canned_server: Start) -> None:
    server = canned_server(lambda request: EMPTY)
    with InstasentClient(token=CANARY, base_url=server.url) as client:
        no_httpx(client)
        for _ in range(3):
            client.send_bulk_wire(bulk(2), deadline=soon())
        assert client._lean is not None and client._lean.idle_connections == 1
    assert (server.connections, len(server.requests)) == (1, 3)


# -- when it is not used ------------------------------------------------------------------------
def test_a_mock_transport_a_proxy_or_lean_false_keep_every_request_on_httpx(
        monkeypatch: pytest.MonkeyPatch) -> None:
    mock = httpx.MockTransport(lambda request: httpx.Response(201, json={"entities": [], "errors": []}))
    with InstasentClient(token=CANARY, base_url="http://instasent.test", transport=mock) as client:
        assert client._lean is None
    with InstasentClient(token=CANARY, base_url="http://instasent.test", lean=False) as client:
        assert client._lean is None
    with InstasentClient(token=CANARY, base_url="http://instasent.test") as client:
        assert client._lean is not None
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    with InstasentClient(token=CANARY, base_url="http://instasent.test") as client:
        assert client._lean is None


def test_a_path_httpx_would_percent_encode_is_left_to_httpx_and_query_values_are_spelled_as_httpx_does() -> None:
    with InstasentClient(token=CANARY, base_url="http://instasent.test/v1/") as client:
        assert client._lean is not None
        assert client._lean.target("/sms/x y") is None
        params: list[tuple[str, str | int | float | bool | None]] = [("a", True), ("b", None), ("c", 1.5)]
        assert client._lean.target("/sms/bulk", params) == b"/v1/sms/bulk?a=true&b=&c=1.5"
        assert client._http.build_request("GET", "/sms/bulk", params=params).url.raw_path == \
            b"/v1/sms/bulk?a=true&b=&c=1.5"
