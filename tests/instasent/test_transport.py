"""Requests go through ``dispatcher.instasent.transport`` and behave exactly as through httpx's own
transport: same results, same errors, same bookkeeping, over real sockets; each ends by its deadline."""

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
from tests.helpers import SANDBOX_TOKEN, SandboxHandle
from tests.instasent.conftest import Answerer, CannedServer, http_answer

CANARY = "tok-LEAKCANARY-9f3e"
EMPTY = http_answer(201, b'{"entities": [], "errors": []}', "Content-Type: application/json")
Start = Callable[[Answerer], CannedServer]


def soon(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


def bulk(n: int, prefix: str = "l") -> list[dict[str, Any]]:
    return [wire_item("Acme", f"+34600{i:04d}00", f"Hello {i}", f"{prefix}-{i:04d}") for i in range(n)]


def assert_no_token(exc: BaseException, token: str = CANARY) -> None:
    text = "".join(traceback.format_exception(exc))
    assert token not in str(exc) and token not in repr(exc) and token not in text
    assert "LEAKCANARY" not in text


@pytest.fixture()
def clients(settings: Settings) -> Iterator[Callable[..., InstasentClient]]:
    """Make clients on the sandbox, through the production transport (``ours``) or httpx's own; closed
    after the test."""
    made: list[InstasentClient] = []

    def make(ours: bool, token: str = SANDBOX_TOKEN) -> InstasentClient:
        client = InstasentClient(token=token, base_url=settings.instasent_base_url,
                                 transport=None if ours else httpx.HTTPTransport())
        made.append(client)
        return client

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
def test_the_transport_gives_the_same_outcome_as_httpxs_own_against_the_sandbox(
        scenario: tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]], str],
        clients: Callable[..., InstasentClient], sandbox: SandboxHandle) -> None:
    config, faults, items, token = scenario
    outcomes = []
    for ours in (True, False):
        sandbox.reset(**config)
        if faults:
            sandbox.faults(**faults)
        outcomes.append(_outcome(clients(ours, token), items, token))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0]["answers"] and outcomes[0]["answers"][0][0] == "POST /sms/bulk"
    assert "POST /sms/bulk" in outcomes[0]["rate_limits"]


def test_a_request_with_a_deadline_keeps_its_rate_limits(
        clients: Callable[..., InstasentClient], sandbox: SandboxHandle) -> None:
    client = clients(True)
    result = client.send_bulk_wire(bulk(3), deadline=soon())
    assert len(result.accepted) == 3 and result.rejected == {}
    assert {m["clientId"] for m in sandbox.messages()} == set(result.accepted)
    assert client.rate_limits["POST /sms/bulk"].reset > 0
    found = client.search_client_ids(list(result.accepted), deadline=soon())
    assert found.complete and {cid: sms.id for cid, sms in found.found.items()} == result.accepted


def httpxs_own(ours: bool) -> httpx.BaseTransport | None:
    """None (the client's own transport) when ``ours``, else httpx's."""
    return None if ours else httpx.HTTPTransport()


def test_a_body_that_is_not_json_is_an_unknown_outcome_on_both_transports(canned_server: Start) -> None:
    server = canned_server(lambda request: http_answer(201, b"<html>oops</html>", "Content-Type: text/html"))
    errors = []
    for ours in (True, False):
        with InstasentClient(token=CANARY, base_url=server.url, transport=httpxs_own(ours)) as client:
            with pytest.raises(OutcomeUnknown) as info:
                client.send_bulk_wire(bulk(1), deadline=soon())
            assert_no_token(info.value)
            errors.append((str(info.value), info.value.status))
    assert errors[0] == errors[1]
    assert errors[0][0] == "Instasent answered POST /sms/bulk with a body that is not JSON."


def test_a_request_is_on_the_wire_what_httpxs_own_transport_sends(canned_server: Start) -> None:
    server = canned_server(lambda request: http_answer(200, b'{"entities": [], "errors": []}'))
    for ours in (True, False):
        with InstasentClient(token=CANARY, base_url=server.url + "/transactional/v1/",
                             transport=httpxs_own(ours)) as client:
            client.send_bulk_wire(bulk(2), deadline=soon())
            client.search_client_ids(["a b", "c+d/é", "e&f=g"], max_pages=1, deadline=soon())
    our_requests, httpx_requests = server.requests[:2], server.requests[2:]

    def parts(request: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
        head, _, body = request.partition(b"\r\n\r\n")
        line, *lines = head.split(b"\r\n")
        headers = dict(tuple(part.strip() for part in h.split(b":", 1)) for h in lines)
        headers = {name.lower(): value for name, value in headers.items()}
        return line, headers, body

    for mine, theirs in zip(our_requests, httpx_requests, strict=True):
        (line, headers, body), (their_line, their_headers, their_body) = parts(mine), parts(theirs)
        assert (line, body) == (their_line, their_body)
        assert headers.pop(b"accept-encoding") == b"identity"
        assert headers == {name: value for name, value in their_headers.items() if name != b"accept-encoding"}
    assert parts(our_requests[0])[0] == b"POST /transactional/v1/sms/bulk HTTP/1.1"
    assert parts(our_requests[1])[0].startswith(b"GET /transactional/v1/sms?page=1&per_page=100&clientId=a+b&")


def test_a_compressed_answer_is_decoded_and_a_corrupt_one_cannot_be_read(canned_server: Start) -> None:
    body = gzip.compress(orjson.dumps({"entities": [{"id": "s1", "clientId": "l-0000"}], "errors": []}))
    good = canned_server(lambda request: http_answer(201, body, "Content-Encoding: gzip"))
    bad = canned_server(lambda request: http_answer(201, b"not gzip at all", "Content-Encoding: gzip"))
    with InstasentClient(token=CANARY, base_url=good.url) as client:
        assert client.send_bulk_wire(bulk(1), deadline=soon()).accepted == {"l-0000": "s1"}
    errors = []
    for ours in (True, False):
        with InstasentClient(token=CANARY, base_url=bad.url, transport=httpxs_own(ours)) as client:
            with pytest.raises(OutcomeUnknown) as info:
                client.send_bulk_wire(bulk(1), deadline=soon())
            errors.append(str(info.value))
    assert errors[0] == errors[1] == "the answer to POST /sms/bulk could not be read (DecodingError)."


def test_the_token_never_reaches_the_logs_of_an_exchange(clients: Callable[..., InstasentClient],
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


def test_a_trickling_answer_is_cut_at_the_deadline(trickling_server: str) -> None:
    with InstasentClient(token=CANARY, base_url=trickling_server) as client:
        started = time.monotonic()
        with pytest.raises(OutcomeUnknown, match="deadline") as info:
            client.send_bulk_wire(bulk(1), deadline=started + 0.4)
        assert time.monotonic() - started < 0.6
        assert_no_token(info.value)


def test_a_refused_connection_means_nothing_was_sent() -> None:
    with (InstasentClient(token=CANARY, base_url=f"http://127.0.0.1:{free_port()}") as client,
          pytest.raises(ConnectionFailed, match="nothing was sent") as info):
        client.send_bulk_wire(bulk(1), deadline=soon())
    assert info.value.maybe_processed is False
    assert_no_token(info.value)


def test_a_connection_closed_after_the_request_was_read_is_an_unknown_outcome(canned_server: Start) -> None:
    server = canned_server(lambda request: None)
    with (InstasentClient(token=CANARY, base_url=server.url) as client,
          pytest.raises(OutcomeUnknown, match="may have been processed") as info):
        client.send_bulk_wire(bulk(1), deadline=soon())
    assert info.value.maybe_processed is True
    assert server.requests and CANARY.encode() in server.requests[0]  # it was sent, with the token
    assert_no_token(info.value)


def test_a_body_cut_short_is_an_unknown_outcome_and_its_connection_is_not_reused(canned_server: Start) -> None:
    cut = b"HTTP/1.1 201 Created\r\nContent-Length: 100\r\nConnection: close\r\n\r\n" + b'{"entities": ['
    answers = iter([cut, EMPTY])
    server = canned_server(lambda request: next(answers))
    with InstasentClient(token=CANARY, base_url=server.url) as client:
        with pytest.raises(OutcomeUnknown, match="may have been processed") as info:
            client.send_bulk_wire(bulk(1), deadline=soon())
        assert_no_token(info.value)
        client.send_bulk_wire(bulk(1), deadline=soon())
    assert server.connections == 2


def test_two_sequential_bulks_share_one_kept_alive_connection(canned_server: Start) -> None:
    server = canned_server(lambda request: EMPTY)
    with InstasentClient(token=CANARY, base_url=server.url) as client:
        for _ in range(3):
            client.send_bulk_wire(bulk(2), deadline=soon())
    assert (server.connections, len(server.requests)) == (1, 3)


# -- proxies ------------------------------------------------------------------------------------
def test_a_proxy_named_by_the_environment_is_used_unless_no_proxy_exempts_the_host(
        canned_server: Start, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = canned_server(lambda request: EMPTY)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    with InstasentClient(token=CANARY, base_url="http://instasent.test/v1") as client:
        client.send_bulk_wire(bulk(1), deadline=soon())
    assert proxy.requests[0].startswith(b"POST http://instasent.test/v1/sms/bulk HTTP/1.1\r\n")
    direct = canned_server(lambda request: EMPTY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with InstasentClient(token=CANARY, base_url=direct.url) as client:
        client.send_bulk_wire(bulk(1), deadline=soon())
    assert (len(proxy.requests), len(direct.requests)) == (1, 1)
