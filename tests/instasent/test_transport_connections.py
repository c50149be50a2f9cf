"""The transport's connections: TLS, keep-alive and its limits, and the HTTP/1.1 framings a server may use."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import trustme

from dispatcher.errors import ConnectionFailed
from dispatcher.instasent import transport
from dispatcher.instasent.client import InstasentClient
from tests.instasent.conftest import CannedServer
from tests.instasent.test_transport import CANARY, EMPTY, assert_no_token, bulk, soon

Start = Callable[..., CannedServer]
BODY = b'{"entities": [{"id": "abc", "clientId": "l-0000"}], "errors": []}'


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server_context(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def trusting(authority: trustme.CA) -> Iterator[ssl.SSLContext]:
    context = ssl.create_default_context()
    authority.configure_trust(context)
    yield context


def test_a_request_over_tls_is_verified_and_its_connection_kept_alive(
        canned_server: Start, tls_server_context: ssl.SSLContext, trusting: ssl.SSLContext) -> None:
    server = canned_server(lambda request: EMPTY, tls=tls_server_context)
    with InstasentClient(token=CANARY, base_url=server.url, verify=trusting) as client:
        for _ in range(3):
            client.send_bulk_wire(bulk(2), deadline=soon())
    assert (server.connections, len(server.requests)) == (1, 3)


def test_a_server_whose_certificate_is_not_trusted_is_never_sent_anything(
        canned_server: Start, tls_server_context: ssl.SSLContext) -> None:
    server = canned_server(lambda request: EMPTY, tls=tls_server_context)
    with InstasentClient(token=CANARY, base_url=server.url) as client:  # the system's authorities only
        with pytest.raises(ConnectionFailed, match="nothing was sent") as info:
            client.send_bulk_wire(bulk(1), deadline=soon())
        assert_no_token(info.value)
    assert server.requests == []


def test_a_connection_the_server_closed_while_idle_is_replaced_without_an_error(canned_server: Start) -> None:
    server = canned_server(lambda request: EMPTY, keep_open=False)
    with InstasentClient(token=CANARY, base_url=server.url) as client:
        for _ in range(3):
            client.send_bulk_wire(bulk(1), deadline=soon())
            assert server.ended.acquire(timeout=5)  # the server has closed it: the client meets it closed
    assert (server.connections, len(server.requests)) == (3, 3)


def test_an_idle_connection_older_than_the_keep_alive_is_not_reused(
        canned_server: Start, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "KEEPALIVE_S", 0.0)
    server = canned_server(lambda request: EMPTY)
    with InstasentClient(token=CANARY, base_url=server.url) as client:
        client.send_bulk_wire(bulk(1), deadline=soon())
        client.send_bulk_wire(bulk(1), deadline=soon())
    assert server.connections == 2


def test_a_connection_close_answer_is_not_kept(canned_server: Start) -> None:
    answer = b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(BODY), BODY)
    server = canned_server(lambda request: answer)
    with InstasentClient(token=CANARY, base_url=server.url) as client:
        result = client.send_bulk_wire(bulk(1), deadline=soon())
        assert result.accepted == {"l-0000": "abc"}
        client.send_bulk_wire(bulk(1), deadline=soon())
    assert server.connections == 2


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n" + BODY[:16] + b"\r\n"
    + b"%x\r\n" % (len(BODY) - 16) + BODY[16:] + b"\r\n0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY),
    b"HTTP/1.1 201 Created\r\nConnection: close\r\n\r\n" + BODY,
], ids=["chunked", "after-100-continue", "until-close"])
def test_every_framing_of_an_answer_is_read_whole(canned_server: Start, answer: bytes) -> None:
    server = canned_server(lambda request: answer, keep_open=not answer.endswith(b"close\r\n\r\n" + BODY))
    with InstasentClient(token=CANARY, base_url=server.url) as client:
        result = client.send_bulk_wire(bulk(1), deadline=soon())
    assert result.accepted == {"l-0000": "abc"}


def test_several_threads_share_one_client_each_on_a_connection_of_its_own(canned_server: Start) -> None:
    server = canned_server(lambda request: EMPTY)
    with InstasentClient(token=CANARY, base_url=server.url, max_connections=4) as client:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: client.send_bulk_wire(bulk(1, f"t{i}"), deadline=soon()), range(64)))
        assert len(results) == 64
    assert len(server.requests) == 64 and server.connections <= 4


def test_a_server_that_offers_http2_is_still_spoken_to_in_http11(
        canned_server: Start, tls_server_context: ssl.SSLContext, trusting: ssl.SSLContext) -> None:
    tls_server_context.set_alpn_protocols(["h2", "http/1.1"])
    server = canned_server(lambda request: EMPTY, tls=tls_server_context)
    with InstasentClient(token=CANARY, base_url=server.url, verify=trusting) as client:
        client.send_bulk_wire(bulk(1), deadline=soon())
    assert server.requests[0].startswith(b"POST /sms/bulk HTTP/1.1\r\n")


def test_a_request_that_finds_every_connection_busy_past_its_pool_timeout_sends_nothing(
        canned_server: Start) -> None:
    release = threading.Event()
    server = canned_server(lambda request: EMPTY if release.wait(5) else None)
    with InstasentClient(token=CANARY, base_url=server.url, max_connections=1) as client, ThreadPoolExecutor(1) as pool:
        first = pool.submit(client.send_bulk_wire, bulk(1, "a"), soon())
        while not server.requests:  # the one connection is taken
            time.sleep(0.01)
        with pytest.raises(ConnectionFailed, match=r"could not be reached .*\(PoolTimeout\); nothing was sent"):
            client.send_bulk_wire(bulk(1, "b"), deadline=time.monotonic() + 0.4)
        release.set()
        assert first.result().accepted == {}
    assert len(server.requests) == 1
