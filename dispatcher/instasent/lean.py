"""Send a request with a deadline over a kept-alive socket, parsing the answer with httptools.

At no latency a worker spent about a fifth of its CPU in ``httpx.Client.request``: httpx's own
layers (the URL, headers and cookies merged, a ``Request`` with streams, auth and redirects, a
``Response`` with decoders) and below them httpcore's pool and h11's pure-Python parser. Skipping
httpx alone still cost 560 µs of CPU per 100-message bulk here; one ``sendall`` of a request
built from bytes computed once, and llhttp's C parser (``httptools``, uvicorn's) reading the
answer, cost 65 µs. :class:`LeanSender` is that exchange, with what a client owes the server:

- connections are kept alive and reused, at most ``max_idle`` of them, each at most
  :data:`KEEPALIVE_S` idle, and never when the server may have closed it (it is readable while
  idle) or said ``Connection: close``;
- every socket operation ends by the request's deadline (connect and TLS handshake, each write,
  each read), so the exchange does too;
- an answer the server sends while the request is still being written (a 413, say) is read;
- failures raise httpcore's exceptions, which
  :func:`~dispatcher.instasent.translate.translate_transport_error` maps as it maps httpx's:
  nothing was sent (connect, write) or it may have been processed (read, a dropped connection).

It is used only when the ``httpx.Client`` would send through httpx's own transport straight to
the base URL (:meth:`LeanSender.for_client`: no proxy, no mount, no mock), with that transport's
TLS context. It sends no cookie (the client keeps none) and asks for no compression
(``Accept-Encoding: identity``); a server that compresses anyway with gzip or deflate is decoded
with :mod:`zlib` (a corrupt one raises ``httpx.DecodingError``, as httpx would), any other coding
is left as received (as httpx does with a coding it cannot decode).
"""

from __future__ import annotations

import re
import select
import socket
import ssl
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

import httpcore
import httptools
import httpx

from dispatcher.instasent.deadline import cut

#: Query parameters as the client passes them to httpx.
Params = list[tuple[str, str | int | float | bool | None]]
#: Seconds an idle connection is kept for reuse (httpx's default keep-alive expiry).
KEEPALIVE_S = 5.0

#: Paths httpx would send unchanged (it percent-encodes anything else): only those take the lean path.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9\-._~/]*")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_READ_SIZE = 256 * 1024


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole HTTP answer: status, headers under lower-cased names, body (decoded)."""

    status_code: int
    #: Header values by lower-cased name; repeated headers joined with ``", "`` as httpx does.
    headers: Mapping[str, str]
    content: bytes


class _Reading:
    """httptools callbacks collecting one answer (an interim 1xx answer is skipped)."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.status = 0
        self.complete = False
        #: The body ends when the server closes the connection (no length, not chunked).
        self.until_close = False
        self.keep_alive = False
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self.headers, self.body = {}, []

    def on_header(self, raw_name: bytes, raw_value: bytes) -> None:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        self.headers[name] = f"{self.headers[name]}, {value}" if name in self.headers else value

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.until_close = self.status >= 200 and self.status not in (204, 304) \
            and "content-length" not in self.headers and "transfer-encoding" not in self.headers

    def on_body(self, chunk: bytes) -> None:
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        self.complete = self.status >= 200  # a 100 Continue is followed by the answer
        # Only valid inside the callback (llhttp's rule).
        self.keep_alive = self.parser.should_keep_alive()


class LeanSender:
    """Send requests to one server over kept-alive sockets, as an ``httpx.Client`` would.

    Build it with :meth:`for_client`, which answers None when the client's requests could take
    another route (a proxy, a mount, a mock transport, credentials in the base URL). Safe to use
    from several threads: each request has a connection of its own for its duration.
    """

    def __init__(self, base_url: httpx.URL, headers: Mapping[str, str], tls: ssl.SSLContext | None,
                 max_idle: int) -> None:
        self._host = base_url.raw_host.decode("ascii")  # IDNA-encoded, as it is resolved and verified
        self._port = base_url.port or (443 if base_url.scheme == "https" else 80)
        self._tls = tls if base_url.scheme == "https" else None
        self._max_idle = max(1, max_idle)
        # httpx joins a relative path to the base URL's path, which it keeps ending with "/".
        self._prefix = base_url.raw_path.rstrip(b"/")
        fixed = [(b"Host", base_url.netloc),
                 *((name.encode("ascii"), value.encode("ascii")) for name, value in headers.items()
                   if name.lower() != "accept-encoding"),
                 (b"Accept-Encoding", b"identity")]
        self._head = b"".join(name + b": " + value + b"\r\n" for name, value in fixed)
        #: Idle connections with the ``time.monotonic()`` they went idle, the newest last.
        self._idle: list[tuple[socket.socket, float]] = []

    @classmethod
    def for_client(cls, client: httpx.Client, headers: Mapping[str, str], max_idle: int = 2) -> LeanSender | None:
        """A sender for ``client`` (whose fixed request ``headers`` it sends), or None when its
        requests are not all sent by httpx's own transport straight to the base URL.

        It reads httpx's private ``_transport``, ``_mounts``, ``_pool`` and httpcore's
        ``_ssl_context`` (stable since httpx 0.23, as :func:`dispatcher.instasent.deadline.install`
        does): when they change this answers None and the client keeps sending through httpx.
        """
        transport = getattr(client, "_transport", None)
        mounts: Mapping[object, object] | None = getattr(client, "_mounts", None)
        pool = getattr(transport, "_pool", None)
        tls = getattr(pool, "_ssl_context", None)
        base = client.base_url
        # A mount without a transport (a NO_PROXY pattern) sends through the client's own.
        if type(transport) is not httpx.HTTPTransport or type(pool) is not httpcore.ConnectionPool \
                or mounts is None or any(mounted is not None for mounted in mounts.values()) \
                or base.userinfo or base.query or base.scheme not in ("http", "https") \
                or (base.scheme == "https" and not isinstance(tls, ssl.SSLContext)):
            return None
        return cls(base, headers, tls, max_idle)

    def target(self, path: str, params: Params | None = None) -> bytes | None:
        """The request target of ``path`` (relative to the base URL) with ``params`` as its
        query, as httpx would send it; None for a path httpx would percent-encode."""
        if _PLAIN_PATH.fullmatch(path) is None:
            return None
        target = self._prefix + b"/" + path.lstrip("/").encode("ascii")
        if params:
            # httpx's spelling of values: JSON-style booleans, None as empty.
            query = urlencode([(name, "true" if value is True else "false" if value is False
                                else "" if value is None else str(value)) for name, value in params])
            target += b"?" + query.encode("ascii")
        return target

    @property
    def idle_connections(self) -> int:
        """Connections kept open for the next request."""
        return len(self._idle)

    def close(self) -> None:
        """Close the idle connections."""
        while self._idle:
            self._idle.pop()[0].close()

    def send(self, method: str, target: bytes, content: bytes | None, timeout: Mapping[str, float],
             deadline: float | None = None) -> Answer:
        """Send one request for ``target`` (from :meth:`target`) and read its whole answer.

        ``timeout`` holds the ``connect``, ``write`` and ``read`` timeouts in seconds (each
        socket operation's); ``deadline`` (``time.monotonic()``) cuts every one of them.

        Raises:
            httpcore.ConnectError, httpcore.ConnectTimeout: nothing was sent.
            httpcore.WriteError, httpcore.WriteTimeout: the request was not sent whole.
            httpcore.ReadError, httpcore.ReadTimeout, httpcore.RemoteProtocolError: the request
                was sent and no whole answer came back.
            httpx.DecodingError: when a gzip or deflate body is corrupt (as httpx raises it).
        """
        length = b"" if content is None and method not in _BODY_METHODS else \
            b"Content-Length: %d\r\n" % len(content or b"")
        request = b"%s %s HTTP/1.1\r\n%s%s\r\n%s" % (method.encode("ascii"), target, self._head, length,
                                                     content or b"")
        sock = self._connection(timeout.get("connect"), deadline)
        try:
            reading = self._exchange(sock, request, timeout, deadline)
        except BaseException:
            sock.close()
            raise
        if reading.keep_alive and not reading.until_close and len(self._idle) < self._max_idle:
            self._idle.append((sock, time.monotonic()))
        else:
            sock.close()
        return Answer(reading.status, reading.headers, _decoded(b"".join(reading.body),
                                                                reading.headers.get("content-encoding", "")))

    def _exchange(self, sock: socket.socket, request: bytes, timeout: Mapping[str, float],
                  deadline: float | None) -> _Reading:
        reading = _Reading()
        try:
            sock.settimeout(cut(timeout.get("write"), deadline, httpcore.WriteTimeout))
            sock.sendall(request)
        except TimeoutError:
            raise httpcore.WriteTimeout("the request could not be written in time") from None
        except OSError as exc:
            # The server may have answered early and closed (a 413 before the whole body): read it.
            if not self._read(sock, reading, timeout, deadline, quiet=True):
                raise httpcore.WriteError(f"the request could not be written ({type(exc).__name__})") from None
            return reading
        self._read(sock, reading, timeout, deadline, quiet=False)
        return reading

    def _read(self, sock: socket.socket, reading: _Reading, timeout: Mapping[str, float], deadline: float | None,
              quiet: bool) -> bool:
        """Read a whole answer into ``reading``; with ``quiet``, False instead of raising."""
        try:
            while not reading.complete:
                sock.settimeout(cut(timeout.get("read"), deadline, httpcore.ReadTimeout))
                try:
                    data = sock.recv(_READ_SIZE)
                except TimeoutError:
                    raise httpcore.ReadTimeout("no answer came in time") from None
                except OSError as exc:
                    raise httpcore.ReadError(f"the answer could not be read ({type(exc).__name__})") from None
                if not data:
                    if reading.until_close:  # the close ends the body
                        reading.complete = True
                        break
                    raise httpcore.RemoteProtocolError("the server closed the connection before answering whole")
                try:
                    reading.parser.feed_data(data)
                except httptools.HttpParserUpgrade:
                    raise httpcore.RemoteProtocolError("the server switched protocols") from None
                except httptools.HttpParserError:
                    raise httpcore.RemoteProtocolError("the answer is not well-formed HTTP/1.1") from None
        except (httpcore.ReadTimeout, httpcore.ReadError, httpcore.RemoteProtocolError):
            if quiet:
                return False
            raise
        return True

    def _connection(self, connect_timeout: float | None, deadline: float | None) -> socket.socket:
        """An idle connection still usable, else a new one."""
        now = time.monotonic()
        while self._idle:
            try:
                sock, since = self._idle.pop()
            except IndexError:  # another thread took the last one
                break
            if now - since < KEEPALIVE_S and not _readable(sock):
                return sock
            sock.close()  # expired, or closed by the server (or holding junk) while idle
        return self._connect(connect_timeout, deadline)

    def _connect(self, connect_timeout: float | None, deadline: float | None) -> socket.socket:
        budget = cut(connect_timeout, deadline, httpcore.ConnectTimeout)
        try:
            sock = socket.create_connection((self._host, self._port), timeout=budget)
        except TimeoutError:
            raise httpcore.ConnectTimeout("the server could not be reached in time") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"the server could not be reached ({type(exc).__name__})") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Name resolution is not bounded by the socket timeout: check the deadline again.
            budget = cut(connect_timeout, deadline, httpcore.ConnectTimeout)
            if self._tls is not None:
                sock.settimeout(budget)
                sock = self._tls.wrap_socket(sock, server_hostname=self._host)
        except TimeoutError:
            sock.close()
            raise httpcore.ConnectTimeout("the TLS handshake did not end in time") from None
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise httpcore.ConnectError(f"the TLS handshake failed ({type(exc).__name__})") from None
        except BaseException:
            sock.close()
            raise
        return sock


def _readable(sock: socket.socket) -> bool:
    """Whether an idle connection has something to read: the server closed it, or sent junk."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


def _decoded(body: bytes, encoding: str) -> bytes:
    """``body`` without its gzip or deflate content codings; as received for any other coding.

    Raises:
        httpx.DecodingError: when a gzip or deflate body is corrupt.
    """
    codings = [coding.strip().lower() for coding in encoding.split(",") if coding.strip()]
    if not body or all(coding == "identity" for coding in codings):
        return body
    if not all(coding in ("identity", "gzip", "x-gzip", "deflate") for coding in codings):
        return body
    try:
        for coding in reversed(codings):
            if coding in ("gzip", "x-gzip"):
                body = zlib.decompress(body, zlib.MAX_WBITS | 16)
            elif coding == "deflate":
                try:
                    body = zlib.decompress(body)
                except zlib.error:  # raw deflate, without the zlib wrapper, as some servers send it
                    body = zlib.decompress(body, -zlib.MAX_WBITS)
    except zlib.error:
        raise httpx.DecodingError(f"a {encoding} body that cannot be decoded") from None
    return body
