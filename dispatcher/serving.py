"""Serve the console and the webhook with uvicorn, with deadlines on everything the server waits for.

uvicorn has a keep-alive timeout but no deadline on reading a request: a socket that sends half a
request line and idles, or a body dripped a byte at a time, holds its connection for ever. This
module adds, per process:

- a **header deadline**: a connection must deliver a request's line and headers within
  ``header_timeout_s`` of its opening, or of the end of the previous answer, else it is closed;
- a **body deadline**: while the app waits for the request body, each next KiB (or the body's end)
  must arrive within ``body_timeout_s`` of waiting, else the connection is cut, so a drip of a byte
  every few seconds is cut as surely as a silent client;
- a **connection cap**: at most ``max_connections`` open connections. A new one past the cap first
  closes the oldest connection that is still waiting for a request (an idle or slow client), and is
  answered 503 and closed only when every connection is busy with a request. uvicorn's own
  ``limit_concurrency`` is not used: it counts connections that are only waiting for headers and
  answers the *valid* request 503, so slow sockets would lock real clients out.

How, with the least private surface (uvicorn documents no hook for read deadlines, see its issue
#157): :class:`GuardedH11Protocol` and :class:`GuardedHttpToolsProtocol` subclass uvicorn's two HTTP
protocols, passed as ``http=`` (which takes a protocol class), and override only the methods of
:class:`asyncio.Protocol` (``connection_made``, ``data_received``, ``connection_lost``), always
calling the parent's; they read nothing of uvicorn's state. What a connection is doing (waiting for
headers, running a request, waiting for body) is learnt at the ASGI level, from the public ASGI
messages, by :class:`DeadlineMiddleware`. The two meet through a context variable set around
``data_received``: uvicorn parses there and starts each request's task there (or, for a pipelined
request, from the previous request's task), and a task copies the context it is created in.

The access log is filtered (:class:`NoQueryString`): a query string, which may carry a token, never
reaches it. ``X-Forwarded-For``/``-Proto`` are trusted only from the addresses in
``forwarded_allow_ips``; none by default (uvicorn itself trusts 127.0.0.1 by default, which would let
any local process forge a client address or scheme).
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import importlib.util
import ipaddress
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

import uvicorn
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is an optional speed-up; h11 then stands in
    HttpToolsProtocol = H11Protocol  # type: ignore[misc,assignment]

from dispatcher.errors import ConfigurationError
from dispatcher.settings import Settings

log = logging.getLogger("uvicorn.error")

#: Bytes of request body that count as progress: each such amount (or the body's end) restarts the
#: body deadline. Small enough for any real client, large enough that a drip never makes progress.
BODY_PROGRESS_BYTES = 1024
#: Queued connections the kernel holds before the server accepts them (listen backlog). The server
#: accepts at once and applies its cap itself, so this only absorbs bursts.
LISTEN_BACKLOG = 2048
#: The answer to a connection past the cap when every open connection is busy with a request.
BUSY_ANSWER = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
#: Seconds to wait for uvicorn to see a connection we closed as lost.
LOST_WAIT_S = 5.0
#: Environment variable through which the server's parent hands its limits to worker processes.
LIMITS_ENV = "DISPATCHER_SERVER_LIMITS_JSON"


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What the server waits for and holds, in seconds and connections (see the settings' docs)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    keep_alive_s: int = 5
    max_connections: int = 1000
    #: Proxies whose X-Forwarded-* headers are trusted: IPs, CIDRs, or ``*``; empty trusts none.
    forwarded_allow_ips: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> ServerLimits:
        """The limits of ``settings``, with the ``overrides`` (CLI options) that are not None.

        Raises:
            ConfigurationError: when a proxy address is neither an IP, a CIDR nor ``*``.
        """
        values: dict[str, Any] = {
            "header_timeout_s": settings.server_header_timeout_s, "body_timeout_s": settings.server_body_timeout_s,
            "keep_alive_s": settings.server_keep_alive_s, "max_connections": settings.server_max_connections,
            "forwarded_allow_ips": settings.forwarded_allow_ips}
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["forwarded_allow_ips"] = parse_proxies(values["forwarded_allow_ips"])
        return cls(**values)

    def to_json(self) -> str:
        """These limits as JSON, for :data:`LIMITS_ENV`."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServerLimits:
        """Limits from :meth:`to_json`."""
        values = json.loads(text)
        values["forwarded_allow_ips"] = tuple(values["forwarded_allow_ips"])
        return cls(**{f.name: values[f.name] for f in fields(cls)})


def parse_proxies(value: str | tuple[str, ...]) -> tuple[str, ...]:
    """The trusted proxy addresses of a comma-separated string (IPs, CIDRs, or ``*`` for any).

    Raises:
        ConfigurationError: when an item is neither.
    """
    items = tuple(i.strip() for i in (value.split(",") if isinstance(value, str) else value) if i.strip())
    for item in items:
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigurationError(f"DISPATCHER_FORWARDED_ALLOW_IPS / --forwarded-allow-ips: {item!r} is not an "
                                     "IP address or network; give addresses such as 10.0.0.5,10.1.0.0/16.") from None
    return items


# --- the connection side -------------------------------------------------------------------------------


class _Process:
    """The limits and open connections of this server process (one event loop)."""

    limits: ServerLimits | None = None
    #: Open connections, oldest first (a dict keeps insertion order).
    open: dict[Connection, None] = {}  # noqa: RUF012 - one registry per process, on purpose

    @classmethod
    def current_limits(cls) -> ServerLimits:
        """The limits set by :func:`serve`, else handed down by the parent, else the defaults."""
        if cls.limits is None:
            handed = os.environ.get(LIMITS_ENV)
            cls.limits = ServerLimits.from_json(handed) if handed else ServerLimits()
        return cls.limits


#: The connection whose bytes are being parsed: set around ``data_received``, inherited by the
#: request tasks uvicorn starts there.
_CONNECTION: contextvars.ContextVar[Connection | None] = contextvars.ContextVar("dispatcher_connection",
                                                                                 default=None)


class Connection:
    """The deadlines of one client connection. Every method runs on the event loop."""

    def __init__(self, transport: asyncio.BaseTransport, limits: ServerLimits) -> None:
        self.transport = transport
        self.limits = limits
        self.in_request = False
        #: Closed by us (a deadline or the cap), and gone (uvicorn saw the connection lost).
        self.cut = self.gone = False
        self._timer: asyncio.TimerHandle | None = None
        self.wait_for_request()

    def wait_for_request(self) -> None:
        """Between requests: the next request's headers are due within the header timeout."""
        self.in_request = False
        if not (self.cut or self.gone):
            self._arm(self.limits.header_timeout_s)

    def request_started(self) -> None:
        """The app got a request (its headers are in): no header deadline while it runs."""
        self.in_request = True
        self._disarm()

    def close(self) -> None:
        """Cut the connection now (uvicorn sees it lost and ends its request, if any)."""
        self.cut = True
        self._disarm()
        self.transport.close()

    def lost(self) -> None:
        """The connection is gone: forget it and its timer."""
        self.gone = True
        self._disarm()
        _Process.open.pop(self, None)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = asyncio.get_running_loop().call_later(seconds, self.close)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def admit(connection: Connection) -> bool:
    """Register ``connection`` under the cap: past it, close the oldest connection that waits for a
    request, or refuse ``connection`` (False) when every open one is running a request."""
    cap = connection.limits.max_connections
    if len(_Process.open) >= cap:
        idle = next((c for c in _Process.open if not c.in_request), None)
        if idle is None:
            return False
        _Process.open.pop(idle)
        idle.close()
    _Process.open[connection] = None
    return True


class _Guarded(asyncio.Protocol):
    """Deadlines and the cap around one of uvicorn's HTTP protocols (mixed in before it)."""

    _connection: Connection | None = None
    _refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        connection = Connection(transport, _Process.current_limits())
        if not admit(connection):
            connection.lost()
            self._refused = True
            transport.write(BUSY_ANSWER)  # type: ignore[attr-defined]
            transport.close()
            return
        self._connection = connection
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        token = _CONNECTION.set(self._connection)
        try:
            super().data_received(data)
        finally:
            _CONNECTION.reset(token)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        if self._connection is not None:
            self._connection.lost()
        super().connection_lost(exc)


class GuardedH11Protocol(_Guarded, H11Protocol):
    """uvicorn's h11 protocol with the deadlines and the cap."""


class GuardedHttpToolsProtocol(_Guarded, HttpToolsProtocol):
    """uvicorn's httptools protocol with the deadlines and the cap."""


def speedups_installed() -> bool:
    """True when uvloop and httptools are installed (uvicorn's faster loop and parser)."""
    return importlib.util.find_spec("uvloop") is not None and importlib.util.find_spec("httptools") is not None


# --- the ASGI side --------------------------------------------------------------------------------------


class DeadlineMiddleware:
    """Tells the connection when a request runs, and holds the body deadline while the app waits.

    A request whose body is cut ends quietly: the app sees a disconnect, and the
    :class:`~starlette.requests.ClientDisconnect` it may raise is not logged as a server error.
    """

    def __init__(self, app: ASGIApp, limits: ServerLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = _CONNECTION.get()
        if scope["type"] != "http" or connection is None:
            await self.app(scope, receive, send)
            return
        connection.request_started()
        body = _BodyDeadline(connection, self.limits.body_timeout_s, receive)

        async def finishing_send(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                connection.wait_for_request()

        try:
            await self.app(scope, body.receive, finishing_send)
        except ClientDisconnect:
            if not connection.cut:
                raise
        finally:
            if connection.in_request and not connection.cut:  # the app ended without a full answer
                connection.wait_for_request()


class _BodyDeadline:
    """``receive`` with a deadline: time spent waiting counts down from the body timeout, and each
    :data:`BODY_PROGRESS_BYTES` received (or the end of the body) starts it again."""

    def __init__(self, connection: Connection, timeout_s: float, receive: Receive) -> None:
        self.connection = connection
        self.timeout_s = timeout_s
        self.left_s = timeout_s
        self.progress = 0
        self.done = False
        self._receive = receive

    async def receive(self) -> Message:
        if self.done:
            return await self._receive()
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.left_s):
                message = await self._receive()
        except TimeoutError:
            log.info("Closed a connection whose request body stalled for %g s.", self.timeout_s)
            self.connection.close()
            # uvicorn learns of the closing on the next turn of the loop; the app's next message comes
            # from it (a disconnect), so it does not answer (or log an error about) a connection it lost.
            try:
                async with asyncio.timeout(LOST_WAIT_S):
                    return await self._receive()
            except TimeoutError:
                return {"type": "http.disconnect"}
        self.left_s -= time.monotonic() - started
        if message["type"] == "http.request":
            self.progress += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.done = True
            elif self.progress >= BODY_PROGRESS_BYTES:
                self.progress, self.left_s = 0, self.timeout_s
        return message


# --- the access log and uvicorn's options ---------------------------------------------------------------


class NoQueryString(logging.Filter):
    """Drops the query string from access-log lines (a ``?token=`` must never be written down).

    uvicorn logs ``(client, method, path_with_query, http_version, status)``; its access formatter
    reads those five arguments, so the path is cut in place. Any other shape is flattened to its
    message with every ``?...`` removed.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], args[2].split("?", 1)[0], args[3], args[4])
        elif "?" in record.getMessage():
            record.msg = " ".join(word.split("?", 1)[0] for word in record.getMessage().split(" "))
            record.args = None
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with :class:`NoQueryString` on the access log."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["no_query_string"] = {"()": f"{__name__}.NoQueryString"}
    config["handlers"]["access"]["filters"] = ["no_query_string"]
    config["loggers"]["uvicorn.access"]["filters"] = ["no_query_string"]
    return config


def uvicorn_options(limits: ServerLimits, host: str, port: int, *, fast: bool, access_log: bool,
                    log_level: str) -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.run`` for ``limits`` (a pure function, for tests)."""
    trusted = list(limits.forwarded_allow_ips)
    return {
        "host": host, "port": port, "log_level": log_level, "access_log": access_log, "log_config": log_config(),
        "loop": "uvloop" if fast else "asyncio", "http": GuardedHttpToolsProtocol if fast else GuardedH11Protocol,
        # Neither app speaks WebSocket: an upgrade request is answered as plain HTTP, and no upgraded
        # socket escapes the deadlines (they follow the HTTP protocol object).
        "ws": "none",
        "timeout_keep_alive": limits.keep_alive_s, "backlog": LISTEN_BACKLOG,
        # Trusted proxies only. uvicorn's default trusts 127.0.0.1 (or FORWARDED_ALLOW_IPS from the
        # environment): any local process could then forge a client address or the https scheme.
        "proxy_headers": bool(trusted), "forwarded_allow_ips": trusted or None,
    }


def guard(app: ASGIApp, limits: ServerLimits) -> ASGIApp:
    """``app`` under the deadlines of ``limits``, which become this process's limits."""
    _Process.limits = limits
    return DeadlineMiddleware(app, limits)


def handed_down_limits() -> ServerLimits:
    """In a worker process started by :func:`serve`: the limits its parent set."""
    return _Process.current_limits()


def serve(app: ASGIApp | str, limits: ServerLimits, host: str, port: int, *, workers: int = 1,
          fast: bool | None = None, access_log: bool = False, log_level: str = "warning") -> None:
    """Serve ``app`` until interrupted.

    ``app`` is the ASGI app, or with ``workers`` over 1 the ``module:factory`` name each worker
    process builds its own app with; the factory must wrap it with :func:`guard` and
    :func:`handed_down_limits`, which reads the limits this function hands down in the environment.
    ``fast`` picks uvloop and httptools (default: when installed).
    """
    fast = speedups_installed() if fast is None else fast
    options = uvicorn_options(limits, host, port, fast=fast, access_log=access_log, log_level=log_level)
    if isinstance(app, str):
        os.environ[LIMITS_ENV] = limits.to_json()
        uvicorn.run(app, factory=True, workers=workers, **options)
    else:
        uvicorn.run(guard(app, limits), **options)

