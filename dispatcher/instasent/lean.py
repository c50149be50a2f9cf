"""Send a request straight through httpcore's connection pool, skipping httpx's client layer.

At no latency a worker spends about a fifth of its CPU in ``httpx.Client.request``, of which only
half is the exchange itself (httpcore and h11); the rest is httpx's own layers: merging the URL,
headers and cookies, a ``Request`` with streams, auth and redirect handling, event hooks, the
conversions to and from httpcore, a ``Response`` with its decoders. :class:`LeanSender` builds the
one ``httpcore.Request`` itself from what it computed once (the base URL's parts, the headers as
bytes) and reads the whole answer into an :class:`Answer`.

It is used only when the ``httpx.Client`` sends through httpx's own transport, with no proxy and
no mounts (:meth:`LeanSender.for_client`), so it reaches the same pool with the same TLS
context, limits and :mod:`dispatcher.instasent.deadline` backend that httpx would. It raises
httpcore's exceptions, which :func:`~dispatcher.instasent.translate.translate_transport_error`
maps exactly as their httpx counterparts. It sends no cookie (the client keeps none) and asks
for no compression (``Accept-Encoding: identity``); a server that compresses anyway with gzip or
deflate is decoded with :mod:`zlib` (a corrupt one raises ``httpx.DecodingError``, as httpx
would), any other coding is left as received (as httpx does with a coding it cannot decode).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

import httpcore
import httpx

#: Query parameters as the client passes them to httpx.
Params = list[tuple[str, str | int | float | bool | None]]

#: Paths httpx would send unchanged (it percent-encodes anything else): only those take the lean path.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9\-._~/]*")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole HTTP answer: status, headers under lower-cased names, body (decoded)."""

    status_code: int
    #: Header values by lower-cased name; repeated headers joined with ``", "`` as httpx does.
    headers: Mapping[str, str]
    content: bytes


class LeanSender:
    """Send requests through the httpcore pool of an ``httpx.Client``, as that client would.

    Build it with :meth:`for_client`, which answers None when the client's requests could take
    another route (a proxy, a mount, a mock transport, credentials in the base URL).
    """

    def __init__(self, pool: httpcore.ConnectionPool, base_url: httpx.URL, headers: Mapping[str, str]) -> None:
        self._pool = pool
        self._scheme = base_url.raw_scheme
        self._host = base_url.raw_host
        self._port = base_url.port
        # httpx joins a relative path to the base URL's path, which it keeps ending with "/".
        self._prefix = base_url.raw_path.rstrip(b"/")
        self._headers = [(b"Host", base_url.netloc),
                         *((name.encode("ascii"), value.encode("ascii")) for name, value in headers.items()
                           if name.lower() != "accept-encoding"),
                         (b"Accept-Encoding", b"identity")]

    @classmethod
    def for_client(cls, client: httpx.Client, headers: Mapping[str, str]) -> LeanSender | None:
        """A sender for ``client`` (whose fixed request ``headers`` it sends), or None when its
        requests are not all sent by httpx's own transport straight to the base URL.

        It reads httpx's private ``_transport``, ``_mounts`` and ``_pool`` (stable since httpx
        0.23, as :func:`dispatcher.instasent.deadline.install` does): when they change this
        answers None and the client keeps sending through httpx.
        """
        transport = getattr(client, "_transport", None)
        mounts: Mapping[object, object] | None = getattr(client, "_mounts", None)
        pool = getattr(transport, "_pool", None)
        base = client.base_url
        # A mount without a transport (a NO_PROXY pattern) sends through the client's own.
        if type(transport) is not httpx.HTTPTransport or type(pool) is not httpcore.ConnectionPool \
                or mounts is None or any(mounted is not None for mounted in mounts.values()) \
                or base.userinfo or base.query or base.scheme not in ("http", "https"):
            return None
        return cls(pool, base, headers)

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

    def send(self, method: str, target: bytes, content: bytes | None, timeout: dict[str, float]) -> Answer:
        """Send one request for ``target`` (from :meth:`target`) and read its whole answer.

        ``timeout`` holds httpcore's ``connect``, ``read``, ``write`` and ``pool`` timeouts in
        seconds. The connection goes back to the pool once the body is read, and is closed when
        reading it fails.

        Raises:
            httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError,
            httpcore.UnsupportedProtocol: as the pool raises them.
            httpx.DecodingError: when a gzip or deflate body is corrupt (as httpx raises it).
        """
        headers = self._headers
        if content is not None:
            headers = [*headers, (b"Content-Length", str(len(content)).encode("ascii"))]
        elif method in _BODY_METHODS:
            headers = [*headers, (b"Content-Length", b"0")]
        request = httpcore.Request(method.encode("ascii"),
                                   httpcore.URL(scheme=self._scheme, host=self._host, port=self._port,
                                                target=target),
                                   headers=headers, content=content, extensions={"timeout": timeout})
        response = self._pool.handle_request(request)
        try:
            body = response.read()
        finally:
            response.close()
        names: dict[str, str] = {}
        for raw_name, raw_value in response.headers:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            names[name] = f"{names[name]}, {value}" if name in names else value
        return Answer(response.status, names, _decoded(body, names.get("content-encoding", "")))


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
