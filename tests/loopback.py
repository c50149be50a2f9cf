"""A scripted Instasent on a loopback socket, for tests that drive the client's production HTTP path.

:class:`HandlerServer` serves a handler ``(httpx.Request) -> httpx.Response`` (the callables tests
once gave ``httpx.MockTransport``) over real HTTP/1.1 connections, kept alive between requests, and
counts the connections it accepted. :func:`loopback_client` builds an Instasent client on one.

A handler may raise an httpx transport error to script a failure. A read-side one (``ReadTimeout``,
``ReadError``...) closes the connection without an answer, so the client meets the failure for
real. A "nothing was sent" one (``ConnectError``, ``WriteError``...) cannot be caused by a server
after it read the request: the server answers it with an ``X-Loopback-Raise`` header instead, and
:class:`LoopbackTransport` (the production transport plus that one check) raises it in the client.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from dispatcher.instasent.client import InstasentClient
from dispatcher.instasent.transport import InstasentTransport

Handler = Callable[[httpx.Request], httpx.Response]

#: Errors that mean the request never left the client: told to the client, not enacted by the server.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.WriteError, httpx.WriteTimeout,
             httpx.ProxyError)
_RAISE = "X-Loopback-Raise"
_SKIPPED = frozenset({"content-length", "transfer-encoding", "content-encoding", "connection"})


class HandlerServer:
    """Serve ``handler`` over HTTP/1.1 on a loopback port (threaded, a connection per client socket)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        #: Connections accepted so far.
        self.connections = 0
        outer = self

        class Conversation(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10

            def setup(self) -> None:
                outer.connections += 1
                super().setup()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read the client's side."""

            def do_GET(self) -> None:
                self._answer()

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = httpx.Request(self.command, outer.url + self.path, headers=list(self.headers.items()),
                                        content=body)
                try:
                    response = outer.handler(request)
                except _NOT_SENT as exc:
                    response = httpx.Response(599, headers={_RAISE: type(exc).__name__})
                except httpx.TransportError:
                    self.close_connection = True  # no answer: the client's read fails
                    return
                content = response.read()  # decoded: its Content-Encoding is not passed on
                head = [f"HTTP/1.1 {response.status_code} {response.reason_phrase or 'X'}",
                        f"Content-Length: {len(content)}"]
                head += [f"{name}: {value}" for name, value in response.headers.multi_items()
                         if name.lower() not in _SKIPPED]
                try:  # one write: a head and a body in two small writes would meet Nagle's delay
                    self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + content)
                except OSError:  # the client gave up (its deadline passed)
                    self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Conversation)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop accepting connections and close the listening socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class LoopbackTransport(InstasentTransport):
    """The production transport; an answer marked ``X-Loopback-Raise`` is raised as that httpx error."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        name = response.headers.get(_RAISE)
        if name is not None:
            raise getattr(httpx, name)("scripted by the loopback server", request=request)
        return response


def loopback_client(base_url: str, token: str = "t") -> InstasentClient:
    """An Instasent client on the :class:`HandlerServer` at ``base_url``, through the production
    transport (see the module docstring)."""
    transport = LoopbackTransport(ssl_context=httpx.create_ssl_context(), max_connections=64)
    return InstasentClient(token=token, base_url=base_url, transport=transport)
