"""The httpx transport every request to Instasent goes through: HTTP/1.1 over httpcore's pool, each
exchange ended by its deadline and each answer capped in size.

:class:`InstasentTransport` is an ``httpx.BaseTransport`` that owns an ``httpcore.ConnectionPool``
(kept-alive connections, TLS verified with the given context, HTTP/2 off) whose network backend is
:class:`~dispatcher.instasent.deadline.DeadlineBackend`. A request may carry a deadline, a
``time.monotonic()`` instant, in its ``"deadline"`` extension
(``client.request(..., extensions={"deadline": t})``): every socket operation of that exchange
(connect, TLS handshake, each write, each read) is then cut to the time left, so the whole exchange
ends by it however slowly the server answers.

The answer is read whole here, on the calling thread: at most :data:`MAX_BODY_BYTES` of body (a
longer one is refused as ``httpx.RemoteProtocolError`` as soon as the cap is passed, and nothing
more is read), and head lines bounded by h11 (httpcore gives it ``max_incomplete_event_size`` of
100 KiB; a longer head is a ``RemoteProtocolError`` too). A connection is reused only after a whole
exchange: httpcore closes one whose answer was not read to its end (a refused answer, a timeout, a
dropped read) or whose request failed part-way, and drops an idle one that became readable (the
server closed it, or sent bytes nobody asked for).

httpcore's exceptions are raised as their httpx counterparts, as ``httpx.HTTPTransport`` does, so
:func:`~dispatcher.instasent.translate.translate_transport_error` has one family to map.
"""

from __future__ import annotations

import ssl
import threading
import zlib

import httpcore
import httpx

from dispatcher.instasent import deadline as deadline_io

#: Most bytes of body read from one answer (a bulk answer of 100 items is about 30 KB).
MAX_BODY_BYTES = 1024 * 1024
#: Seconds an idle connection is kept for reuse (httpx's default keep-alive expiry).
KEEPALIVE_S = 5.0

#: httpcore's exceptions and the httpx ones each becomes (the pairs ``httpx.HTTPTransport`` uses).
_EXCEPTIONS: dict[type[Exception], type[httpx.TransportError]] = {
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
    httpcore.TimeoutException: httpx.TimeoutException,
    httpcore.NetworkError: httpx.NetworkError,
    httpcore.ProtocolError: httpx.ProtocolError,
}


def as_httpx_error(exc: Exception) -> httpx.TransportError | None:
    """The httpx exception ``exc`` (an httpcore one) stands for; None for any other exception."""
    for kind in type(exc).__mro__:
        mapped = _EXCEPTIONS.get(kind)
        if mapped is not None:
            return mapped(str(exc))
    return None


class InstasentTransport(httpx.BaseTransport):
    """Send HTTP/1.1 requests over a pool of kept-alive connections, each exchange ended by the
    request's ``"deadline"`` extension when it has one (see the module docstring). Safe to share
    between threads."""

    def __init__(self, *, ssl_context: ssl.SSLContext, max_connections: int,
                 proxy: httpcore.Proxy | None = None) -> None:
        """``max_connections``: connections open at once, all of which may be kept alive idle."""
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            proxy=proxy,
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=KEEPALIVE_S,
            # HTTP/2 stays off: nothing here speaks it, and one protocol is one behaviour to test.
            http1=True,
            http2=False,
            network_backend=deadline_io.DeadlineBackend(httpcore.SyncBackend()),
        )
        # At most one exchange per connection enters the pool, so no request ever waits in its queue:
        # httpcore 1.0.9 may close a connection it already gave a queued request (encode/httpcore#1110),
        # failing that request's read.
        self._slots = threading.BoundedSemaphore(max_connections)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and read its whole answer (at most :data:`MAX_BODY_BYTES` of body).

        Raises:
            httpx.TransportError: the httpx counterpart of whatever httpcore raised; a
                ``RemoteProtocolError`` for an answer over the cap; a ``ConnectTimeout``,
                ``WriteTimeout`` or ``ReadTimeout`` when the deadline passed in that phase; a
                ``RemoteProtocolError`` too for a compressed body that decodes past the cap or
                whose encoding is not gzip or deflate.
        """
        url = request.url
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        deadline = request.extensions.get("deadline")
        with deadline_io.bounded(deadline):
            try:
                self._take_slot(request, deadline)
                try:
                    response = self._pool.handle_request(core_request)
                    try:
                        body = _read_capped(response)
                    finally:
                        # Closing an answer not read to its end closes its connection (httpcore reuses
                        # a connection only when both sides of h11 are done).
                        response.close()
                finally:
                    self._slots.release()
            except Exception as exc:
                mapped = as_httpx_error(exc)
                if mapped is None:
                    raise
                raise mapped from exc
        # The client keeps no cookie (Instasent authenticates by token and sets none we need):
        # dropping Set-Cookie here spares httpx's cookie jar a pass over every answer.
        headers = [(name, value) for name, value in response.headers if name.lower() != b"set-cookie"]
        headers, body = _decoded(headers, body)
        return httpx.Response(status_code=response.status, headers=headers, stream=httpx.ByteStream(body),
                              extensions=response.extensions)

    def _take_slot(self, request: httpx.Request, deadline: float | None) -> None:
        """Wait for one of the ``max_connections`` slots, at most the request's pool timeout.

        Raises:
            httpcore.PoolTimeout: when none came free in time (nothing was sent).
        """
        timeouts = request.extensions.get("timeout", {})
        wait = deadline_io.cut(timeouts.get("pool"), deadline, httpcore.PoolTimeout)
        if not self._slots.acquire(timeout=wait):
            raise httpcore.PoolTimeout("no connection came free in time")

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.close()


def _read_capped(response: httpcore.Response) -> bytes:
    """The body of ``response``, read chunk by chunk.

    Raises:
        httpcore.RemoteProtocolError: as soon as more than :data:`MAX_BODY_BYTES` have arrived.
    """
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise httpcore.RemoteProtocolError(f"the answer's body is longer than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


#: zlib's ``wbits`` for each content coding decoded here (gzip header, zlib header).
_WBITS = {b"gzip": 16 + zlib.MAX_WBITS, b"x-gzip": 16 + zlib.MAX_WBITS, b"deflate": zlib.MAX_WBITS}


def _decoded(headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """``headers`` and ``body`` with any gzip or deflate content coding undone here, with the same
    cap on the decoded bytes as on the raw ones.

    The client asks for ``identity``; a server that compresses anyway would otherwise have httpx
    inflate a 1 MB body into gigabytes, with no cap.

    Raises:
        httpx.RemoteProtocolError: for a body that decodes past :data:`MAX_BODY_BYTES` or has a
            coding other than gzip or deflate.
        httpx.DecodingError: for a body that is not valid for its coding.
    """
    codings = [c.strip().lower() for name, value in headers if name.lower() == b"content-encoding"
               for c in value.split(b",") if c.strip().lower() not in (b"", b"identity")]
    if not codings:
        return headers, body
    for coding in reversed(codings):
        wbits = _WBITS.get(coding)
        if wbits is None:
            raise httpx.RemoteProtocolError(f"the answer is encoded as {coding.decode('latin-1')!r}, "
                                            "which this client does not read")
        inflater = zlib.decompressobj(wbits)
        try:
            decoded = inflater.decompress(body, MAX_BODY_BYTES + 1)
        except zlib.error:
            # As httpx itself says of a body it cannot decode.
            raise httpx.DecodingError("the answer's compressed body is corrupt") from None
        if len(decoded) > MAX_BODY_BYTES or inflater.unconsumed_tail:
            raise httpx.RemoteProtocolError(f"the answer's decoded body is longer than {MAX_BODY_BYTES} bytes")
        body = decoded
    kept = [(name, value) for name, value in headers
            if name.lower() not in (b"content-encoding", b"content-length")]
    return kept, body
