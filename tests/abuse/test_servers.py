"""The console and the webhook against slow and nosy clients, on real server processes.

Slow-loris sockets (half a request line, then silence), a body dripped a byte at a time, more
sockets than the connection cap, query strings in the access log, forged X-Forwarded-* headers.
The servers run with short deadlines set through the environment so that each test takes seconds;
the defaults themselves are checked without a server. Memory is the server's RSS, read from outside
with psutil.
"""

from __future__ import annotations

import selectors
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import psutil
import pytest
import redis

from dispatcher.dev.services import Service, free_port, http_ready, spawn, start_webhook, wait_until
from dispatcher.serving import GuardedH11Protocol, GuardedHttpToolsProtocol, ServerLimits, uvicorn_options
from dispatcher.settings import Settings
from tests.helpers import one_sentence_error, run, worker_env

pytestmark = pytest.mark.slow

SECRET = "s3cret-webhook-abuse-0123456789"
MB = 1024 * 1024
#: Deadlines of the servers under test, in seconds (the defaults are 10, 10 and 5).
SHORT = {"DISPATCHER_SERVER_HEADER_TIMEOUT": "2", "DISPATCHER_SERVER_BODY_TIMEOUT": "2",
         "DISPATCHER_SERVER_KEEP_ALIVE": "1"}
#: Every half-sent request must be closed by the server within this many seconds (issue 21).
CLOSED_WITHIN_S = 60.0
#: A valid request made during an attack must answer within this many seconds (issue 21).
VALID_WITHIN_S = 1.0


def start_console(settings: Settings, *options: str, **env: str) -> Service:
    """``dispatcher console`` on a free loopback port, with ``env`` over the test settings."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "dispatcher", "console", "--port", str(port), *options]
    service = spawn("console", argv, url, env={**worker_env(settings), **env})
    wait_until(http_ready(f"{url}/healthz"), service, timeout_s=30)
    return service


@pytest.fixture()
def console(settings: Settings, redis_client: redis.Redis) -> Iterator[Service]:
    service = start_console(settings, **SHORT)
    yield service
    service.stop()


def webhook_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {"REDIS_URL": settings.redis_url, "DISPATCHER_KEY_PREFIX": settings.key_prefix,
            "DISPATCHER_WEBHOOK_SECRET": SECRET, "DISPATCHER_ALLOW_VOLATILE_REDIS": "1", **SHORT, **extra}


@pytest.fixture()
def webhook(settings: Settings, redis_client: redis.Redis) -> Iterator[Service]:
    service = start_webhook(webhook_env(settings))
    yield service
    service.stop()


@pytest.fixture(params=["console", "webhook"])
def server(request: pytest.FixtureRequest, settings: Settings, redis_client: redis.Redis) -> Iterator[Service]:
    """Each of the two servers in turn, with the short deadlines."""
    service = start_console(settings, **SHORT) if request.param == "console" else start_webhook(webhook_env(settings))
    yield service
    service.stop()


def address(service: Service) -> tuple[str, int]:
    where = urlsplit(service.url)
    assert where.hostname and where.port
    return where.hostname, where.port


def open_half_requests(service: Service, count: int) -> list[socket.socket]:
    """``count`` sockets that each send half a request line and then say nothing."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(address(service), timeout=5)
        sock.sendall(b"GET /healthz HT")
        sockets.append(sock)
    return sockets


def wait_closed(sockets: list[socket.socket], within_s: float, rss_of: psutil.Process | None = None,
                ) -> tuple[int, int]:
    """Wait until the server closes each socket or ``within_s`` passes; the sockets are closed after.

    Returns:
        How many sockets the server closed, and the highest RSS of ``rss_of`` seen meanwhile (bytes).
    """
    selector = selectors.DefaultSelector()
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    closed, peak = 0, 0
    deadline = time.monotonic() + within_s
    try:
        while closed < len(sockets) and time.monotonic() < deadline:
            if rss_of is not None:
                peak = max(peak, rss_of.memory_info().rss)
            for key, _ in selector.select(timeout=0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(4096)
                except OSError:  # a reset is a close too
                    data = b""
                if not data:
                    selector.unregister(sock)
                    closed += 1
    finally:
        selector.close()
        for sock in sockets:
            sock.close()
    return closed, peak


def valid_request(service: Service) -> int:
    """The status of ``GET /healthz``, which must answer within :data:`VALID_WITHIN_S`."""
    return httpx.get(f"{service.url}/healthz", timeout=VALID_WITHIN_S).status_code


def test_two_hundred_half_sent_requests_are_closed_by_the_server_and_a_valid_request_still_answers(
        server: Service) -> None:
    process = psutil.Process(server.pid)
    assert valid_request(server) == 200  # warm: the first answer allocates what every answer needs
    before = process.memory_info().rss
    sockets = open_half_requests(server, 200)
    assert valid_request(server) == 200
    closed, peak = wait_closed(sockets, CLOSED_WITHIN_S, rss_of=process)
    assert closed == 200
    assert peak - before < 30 * MB
    assert valid_request(server) == 200


def test_past_the_connection_cap_the_oldest_idle_sockets_give_way_to_a_valid_request(
        settings: Settings, redis_client: redis.Redis) -> None:
    # Long header deadline: what frees the slots here is the cap, not the deadline.
    console = start_console(settings, **{**SHORT, "DISPATCHER_SERVER_HEADER_TIMEOUT": "120",
                                         "DISPATCHER_SERVER_MAX_CONNECTIONS": "50"})
    try:
        sockets = open_half_requests(console, 200)
        assert valid_request(console) == 200
        closed, _ = wait_closed(sockets, 5.0)
        assert closed >= 150  # at most 50 open at once, the valid request's among them
        assert psutil.Process(console.pid).num_fds() < 200
    finally:
        console.stop()


def drip(service: Service, path: str, every_s: float = 0.5, declared: int = 1000) -> tuple[int, float]:
    """Send a POST's headers, then its body a byte every ``every_s`` seconds until the server closes.

    Returns:
        The body bytes sent before the close, and the seconds the drip lasted.
    """
    started = time.monotonic()
    host, port = address(service)
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {declared}\r\n\r\n".encode())
        sent = 0
        sock.setblocking(False)
        while sent < declared and time.monotonic() - started < CLOSED_WITHIN_S:
            try:
                if sock.recv(4096) == b"":
                    break
            except BlockingIOError:
                pass
            except OSError:
                break
            try:
                sock.sendall(b"{" if sent == 0 else b" ")
            except OSError:
                break
            sent += 1
            time.sleep(every_s)
    return sent, time.monotonic() - started


@pytest.mark.parametrize("kind", ["console", "webhook"])
def test_a_body_dripped_a_byte_at_a_time_is_cut_and_others_are_served_meanwhile(
        kind: str, settings: Settings, redis_client: redis.Redis) -> None:
    service = start_console(settings, **SHORT) if kind == "console" else start_webhook(webhook_env(settings))
    try:
        path = "/api/session" if kind == "console" else f"/dlr/{SECRET}"
        sent, lasted = drip(service, path)
        assert sent < 1000  # cut long before the declared body was complete (it would take 500 s)
        assert lasted < CLOSED_WITHIN_S
        assert valid_request(service) == 200
        if kind == "webhook":  # the console's own error handler logs a disconnect mid-body with its traceback
            assert "Traceback" not in service.log_tail(200)
    finally:
        service.stop()


def test_the_access_log_never_holds_a_query_string(console: Service) -> None:
    refused = httpx.get(f"{console.url}/api/campaigns?token=leaky-token-0123456789", timeout=5)
    assert refused.status_code == 401
    assert httpx.get(f"{console.url}/healthz?probe=leaky-probe", timeout=5).status_code == 200
    deadline = time.monotonic() + 10
    while "/healthz" not in console.log_tail(200) and time.monotonic() < deadline:
        time.sleep(0.1)
    log = console.log_tail(200)
    assert '"GET /api/campaigns HTTP/1.1" 401' in log  # the line is there, without its query
    assert '"GET /healthz HTTP/1.1" 200' in log
    assert "leaky" not in log and "?" not in log


def test_the_console_believes_x_forwarded_for_only_from_the_proxies_it_is_given(settings: Settings,
                                                                                 redis_client: redis.Redis) -> None:
    forged = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    for options, shown in (((), "127.0.0.1:"), (("--forwarded-allow-ips", "127.0.0.1"), "203.0.113.7:")):
        console = start_console(settings, *options, **SHORT)
        try:
            assert httpx.get(f"{console.url}/healthz", headers=forged, timeout=5).status_code == 200
            deadline = time.monotonic() + 10
            while '"GET /healthz HTTP/1.1" 200' not in console.log_tail(5) and time.monotonic() < deadline:
                time.sleep(0.1)
            line = next(li for li in reversed(console.log_tail(20).splitlines()) if "GET /healthz" in li)
            assert shown in line, (options, line)
        finally:
            console.stop()


ECHO_APP = """
import sys
import orjson
from dispatcher.serving import ServerLimits, serve

async def app(scope, receive, send):
    if scope["type"] == "http":
        body = orjson.dumps({"scheme": scope["scheme"], "client": scope["client"][0]})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

serve(app, ServerLimits.from_json(sys.argv[2]), "127.0.0.1", int(sys.argv[1]))
"""


@pytest.mark.parametrize(("trusted", "expected"), [
    ((), {"scheme": "http", "client": "127.0.0.1"}),
    (("10.0.0.0/8",), {"scheme": "http", "client": "127.0.0.1"}),
    (("127.0.0.1",), {"scheme": "https", "client": "203.0.113.7"}),
])
def test_the_scheme_and_client_follow_x_forwarded_headers_only_from_a_trusted_proxy(
        trusted: tuple[str, ...], expected: dict[str, str]) -> None:
    port = free_port()
    limits = ServerLimits(forwarded_allow_ips=trusted).to_json()
    service = spawn("echo", [sys.executable, "-c", ECHO_APP, str(port), limits], f"http://127.0.0.1:{port}")
    try:
        wait_until(http_ready(service.url), service, timeout_s=30)
        answer = httpx.get(service.url, headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})
        assert orjson.loads(answer.content) == expected
    finally:
        service.stop()


def test_webhook_processes_get_the_deadlines_their_parent_was_given(settings: Settings,
                                                                    redis_client: redis.Redis) -> None:
    service = start_webhook(webhook_env(settings), workers=2)
    try:
        sockets = open_half_requests(service, 20)
        assert valid_request(service) == 200
        closed, _ = wait_closed(sockets, CLOSED_WITHIN_S)
        assert closed == 20
    finally:
        service.stop()


def test_a_malformed_proxy_address_is_refused_in_one_sentence(settings: Settings) -> None:
    result = run({"REDIS_URL": settings.redis_url, "DISPATCHER_WEBHOOK_SECRET": SECRET},
                 "webhook", "--forwarded-allow-ips", "10.0.0.1,proxy.internal")
    assert result.returncode == 2
    assert "'proxy.internal' is not an IP address" in one_sentence_error(result)


def test_the_default_deadlines_close_a_half_sent_request_well_within_a_minute() -> None:
    defaults = Settings()
    assert defaults.server_header_timeout_s + defaults.server_keep_alive_s < CLOSED_WITHIN_S
    assert defaults.server_body_timeout_s < 10 * 3  # a byte every 10 s is cut within three of them
    assert defaults.forwarded_allow_ips == ""
    options = uvicorn_options(ServerLimits.from_settings(defaults), "127.0.0.1", 8790, fast=True,
                              access_log=True, log_level="info")
    assert options["http"] is GuardedHttpToolsProtocol
    assert options["proxy_headers"] is False  # not even 127.0.0.1 is believed by default
    assert options["timeout_keep_alive"] == 5
    assert "limit_concurrency" not in options  # it would answer valid requests 503 while slow sockets wait
    assert uvicorn_options(ServerLimits(), "127.0.0.1", 1, fast=False, access_log=False,
                           log_level="warning")["http"] is GuardedH11Protocol


def test_the_server_settings_come_from_the_environment_with_one_sentence_for_a_bad_value(tmp_path: Path) -> None:
    env = {"DISPATCHER_SERVER_HEADER_TIMEOUT": "3.5", "DISPATCHER_SERVER_BODY_TIMEOUT": "4",
           "DISPATCHER_SERVER_KEEP_ALIVE": "2", "DISPATCHER_SERVER_MAX_CONNECTIONS": "64",
           "DISPATCHER_FORWARDED_ALLOW_IPS": "10.0.0.5, 10.1.0.0/16"}
    limits = ServerLimits.from_settings(Settings.from_env(env, env_file=None), max_connections=32)
    assert limits == ServerLimits(header_timeout_s=3.5, body_timeout_s=4.0, keep_alive_s=2, max_connections=32,
                                  forwarded_allow_ips=("10.0.0.5", "10.1.0.0/16"))
    assert ServerLimits.from_json(limits.to_json()) == limits
    from dispatcher.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="DISPATCHER_SERVER_MAX_CONNECTIONS must be greater than zero"):
        Settings.from_env({"DISPATCHER_SERVER_MAX_CONNECTIONS": "0"}, env_file=None)
