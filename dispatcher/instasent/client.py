"""A synchronous client for Instasent's Transactional API.

One ``httpx.Client`` (timeouts always set) is shared by every call and is safe to use from several
threads. Every request goes through it and its :class:`~dispatcher.instasent.transport.InstasentTransport`
(one pool of kept-alive HTTP/1.1 connections, answers capped in size); a request with a deadline
carries it to the transport, which ends the whole exchange by then. Every transport error and every
non-2xx status is translated into the project's exception tree in exactly one place,
:mod:`dispatcher.instasent.translate`, which keeps apart "nothing was sent" and "it may have been
processed".
The token lives only in the ``Authorization`` header: never in a URL, a repr, a log line or an
exception message.
"""

from __future__ import annotations

import logging
import ssl
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpcore
import httpx
import orjson

from dispatcher.errors import (
    ConfigurationError,
    ConnectionFailed,
    OutcomeUnknown,
)
from dispatcher.instasent import wire
from dispatcher.instasent.models import Account, BulkIds, BulkResult, Lookup, Price, RateLimitInfo, Sms, SmsItem
from dispatcher.instasent.translate import parse_rate_limit, raise_for_status, translate_transport_error
from dispatcher.instasent.transport import InstasentTransport
from dispatcher.settings import Secret, Settings

log = logging.getLogger(__name__)

#: Most items Instasent takes in one ``POST /sms/bulk``.
MAX_BULK_ITEMS = 100
#: Most entities Instasent returns per page of a list.
MAX_PER_PAGE = 100

#: Query parameters as the client passes them to httpx.
Params = list[tuple[str, str | int | float | bool | None]]


@dataclass
class _Deadlines:
    """The deadline of each request of a multi-request search: the first is given, later ones are
    asked of ``later`` (which may block for a rate-limit slot, or raise to stop the search)."""

    first: float | None
    later: Callable[[], float] | None
    asked: int = 0

    def next(self) -> float | None:
        self.asked += 1
        if self.asked == 1 or self.later is None:
            return self.first
        return self.later()


@dataclass(frozen=True, slots=True)
class ClientIdSearch:
    """What a search by ``clientId`` found, and whether it proves the others absent."""

    found: dict[str, Sms] = field(default_factory=dict)
    #: True only when every page was read with the filter honoured: the ids not found were not accepted.
    complete: bool = True
    #: Why the search is incomplete (empty when complete).
    reason: str = ""


class InstasentClient:
    """Speak Instasent's Transactional API over one pooled, timed-out HTTP client.

    ``rate_limits`` maps an endpoint (``"POST /sms/bulk"``) to the latest ``X-RateLimit-*``
    headers seen for it; ``last_rate_limit`` is the latest overall.
    """

    def __init__(
        self,
        *,
        token: Secret | str,
        base_url: str,
        timeout: httpx.Timeout | None = None,
        max_connections: int = 64,
        transport: httpx.BaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        """``transport``: send through this one instead of an :class:`InstasentTransport` (a test's
        ``httpx.MockTransport``, say), which then also decides what a deadline does. ``verify``: a
        TLS context, or whether to verify certificates against the system's authorities.

        Raises:
            ConfigurationError: when the token is missing or holds a character no token has.
        """
        secret = token if isinstance(token, Secret) else Secret(token)
        if not secret:
            raise ConfigurationError("INSTASENT_TOKEN is not set: export it with your Instasent API token.")
        if not all("!" <= char <= "~" for char in secret.reveal()):
            # httpx would fail later with an error that quotes the whole header, token included.
            raise ConfigurationError("INSTASENT_TOKEN holds a character no API token has (a space, a control or "
                                     "a non-ASCII character); check its value.")
        self.base_url = base_url.rstrip("/")
        headers = {
            "Authorization": f"Bearer {secret.reveal()}",
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": "dispatcher/0.1",
            # A compressed answer could expand far past the transport's cap on what it reads.
            "Accept-Encoding": "identity",
        }
        if transport is None:
            context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
            transport = InstasentTransport(ssl_context=context, max_connections=max_connections,
                                           proxy=_environment_proxy(self.base_url))
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout or httpx.Timeout(30.0, connect=5.0),
            transport=transport,
            follow_redirects=False,
        )
        self.rate_limits: dict[str, RateLimitInfo] = {}
        self.last_rate_limit: RateLimitInfo | None = None
        self._on_answer: list[Callable[[str, int], None]] = []

    @classmethod
    def from_settings(cls, settings: Settings, transport: httpx.BaseTransport | None = None, *,
                      max_connections: int = 64, verify: ssl.SSLContext | bool = True) -> InstasentClient:
        """Build a client from settings (``verify``: a TLS context to share between clients, whose
        certificates then load once).

        Raises:
            ConfigurationError: when ``INSTASENT_TOKEN`` is missing.
        """
        timeout = httpx.Timeout(
            connect=settings.connect_timeout_s,
            read=settings.read_timeout_s,
            write=settings.write_timeout_s,
            pool=settings.connect_timeout_s,
        )
        return cls(token=Secret(settings.require_token()), base_url=settings.instasent_base_url,
                   timeout=timeout, transport=transport, max_connections=max_connections, verify=verify)

    def __repr__(self) -> str:
        return f"InstasentClient(base_url={self.base_url!r})"

    def on_answer(self, hook: Callable[[str, int], None]) -> None:
        """Call ``hook(endpoint, status)`` for every answer (``"POST /sms/bulk"``, 201), before its
        status is checked, e.g. to count statuses."""
        self._on_answer.append(hook)

    def __enter__(self) -> InstasentClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # -- SMS --------------------------------------------------------------------------------
    def send_bulk(self, items: Sequence[SmsItem], deadline: float | None = None) -> BulkResult:
        """``POST /sms/bulk`` with 1..100 items; results matched back to input by ``clientId``.

        With ``deadline`` (a ``time.monotonic()`` instant), the whole exchange ends by then.

        Raises:
            ValueError: with no items, more than 100, or items without a unique ``clientId``.
            DispatcherError: see the module docstring for the mapping.
        """
        if not 1 <= len(items) <= MAX_BULK_ITEMS:
            raise ValueError(f"a bulk takes 1..{MAX_BULK_ITEMS} items, got {len(items)}")
        by_id = {item.client_id: item for item in items}
        if len(by_id) != len(items) or "" in by_id:
            raise ValueError("every bulk item needs a unique, non-empty clientId")
        body = self._request("POST", "/sms/bulk", [item.to_wire() for item in items], deadline=deadline)
        return wire.match_bulk(body, items)

    def send_bulk_wire(self, items: Sequence[dict[str, Any]], deadline: float | None = None) -> BulkIds:
        """:meth:`send_bulk` for items already in wire form (:func:`~dispatcher.instasent.models.wire_item`),
        answering only the Instasent id of each accepted item: no model object per message.

        Raises:
            ValueError: with no items, more than 100, or items without a unique ``clientId``.
            DispatcherError: see the module docstring for the mapping.
        """
        if not 1 <= len(items) <= MAX_BULK_ITEMS:
            raise ValueError(f"a bulk takes 1..{MAX_BULK_ITEMS} items, got {len(items)}")
        client_ids = [item.get("clientId") or "" for item in items]
        if len(set(client_ids)) != len(items) or "" in client_ids:
            raise ValueError("every bulk item needs a unique, non-empty clientId")
        return wire.bulk_ids_json(self._request("POST", "/sms/bulk", items, deadline=deadline, raw=True), client_ids)

    def send(self, item: SmsItem) -> Sms:
        """``POST /sms`` with one item; returns the accepted SMS."""
        return Sms.from_wire(wire.entity(self._request("POST", "/sms", item.to_wire())))

    def get_sms(self, sms_id: str) -> Sms:
        """``GET /sms/{id}``.

        Raises:
            NotFound: when Instasent does not know the id.
        """
        return Sms.from_wire(wire.entity(self._request("GET", f"/sms/{wire.path_part(sms_id)}")))

    def list_sms(self, page: int = 1, per_page: int = MAX_PER_PAGE,
                 client_ids: Sequence[str] = ()) -> list[Sms]:
        """One page of ``GET /sms`` (newest first), optionally filtered by ``clientId``.

        The ``clientId`` filter is this project's convention (the sandbox honours it); callers must
        still match results by ``clientId`` themselves, as a server may ignore the filter.
        """
        params: Params = [("page", page), ("per_page", per_page)]
        params += [("clientId", client_id) for client_id in client_ids]
        return [Sms.from_wire(e) for e in wire.entities(self._request("GET", "/sms", params=params))]

    def find_by_client_ids(self, client_ids: Sequence[str], max_pages: int = 20) -> dict[str, Sms]:
        """Find accepted messages by ``clientId``: ``{clientId: Sms}`` for those Instasent has.

        Whether the search was complete is told by :meth:`search_client_ids`.
        """
        return self.search_client_ids(client_ids, max_pages).found

    def search_client_ids(self, client_ids: Sequence[str], max_pages: int = 20, deadline: float | None = None,
                          next_request: Callable[[], float] | None = None) -> ClientIdSearch:
        """Search accepted messages by ``clientId``, and say whether absence is proven.

        Asks for at most 100 ids per request and reads pages until one comes back empty (a server
        may cap ``per_page``, so a short page proves nothing) or every id is found. The search is
        incomplete when the server ignored the ``clientId`` filter (it answered other ids) or
        ``max_pages`` pages were read without reaching the end. ``deadline`` is a
        ``time.monotonic()`` instant the first request may not outlive; ``next_request`` is called
        before every later one (to take its rate-limit slot, for instance) and returns its deadline.
        """
        found: dict[str, Sms] = {}
        ordered = list(dict.fromkeys(client_ids))
        deadlines = _Deadlines(deadline, next_request)
        for start in range(0, len(ordered), MAX_PER_PAGE):
            chunk = ordered[start:start + MAX_PER_PAGE]
            incomplete = self._search_chunk(chunk, found, max_pages, deadlines)
            if incomplete:
                return ClientIdSearch(found, complete=False, reason=incomplete)
        return ClientIdSearch(found, complete=True)

    def _search_chunk(self, chunk: list[str], found: dict[str, Sms], max_pages: int,
                      deadlines: _Deadlines) -> str:
        """Read the pages for one chunk of ids into ``found``; returns why it is incomplete, or ''."""
        wanted = set(chunk)
        ignored = ""
        for page in range(1, max_pages + 1):
            params: Params = [("page", page), ("per_page", MAX_PER_PAGE)]
            params += [("clientId", c) for c in chunk]
            entities = [Sms.from_wire(e) for e in wire.entities(self._request("GET", "/sms", params=params,
                                                                                deadline=deadlines.next()))]
            for sms in entities:
                if sms.client_id in wanted:
                    found.setdefault(sms.client_id, sms)
                else:
                    ignored = "Instasent ignored the clientId filter"
            if wanted <= found.keys():
                return ""
            if not entities:
                # The end of the list: what is not found was not accepted, if the list was ours.
                return ignored
        return f"the search stopped at its cap of {max_pages} pages"

    # -- lookups ----------------------------------------------------------------------------
    def lookup(self, to: str) -> Lookup:
        """``POST /lookup``: an HLR lookup of one E.164 number."""
        return Lookup.from_wire(wire.entity(self._request("POST", "/lookup", {"to": to})))

    def get_lookup(self, lookup_id: str) -> Lookup:
        """``GET /lookup/{id}``."""
        return Lookup.from_wire(wire.entity(self._request("GET", f"/lookup/{wire.path_part(lookup_id)}")))

    def list_lookups(self, page: int = 1, per_page: int = MAX_PER_PAGE) -> list[Lookup]:
        """One page of ``GET /lookup`` (newest first)."""
        body = self._request("GET", "/lookup", params=[("page", page), ("per_page", per_page)])
        return [Lookup.from_wire(e) for e in wire.entities(body)]

    # -- account and prices -----------------------------------------------------------------
    def account(self) -> Account:
        """``GET /organization/account``: the available balance, its currency and, when the answer names
        it (``entity.organization``, an object with ``id`` or ``name``, or a string), the organization.

        Raises:
            OutcomeUnknown: when the answer has no readable balance.
            DispatcherError: see the module docstring for the mapping.
        """
        entity = wire.entity(self._request("GET", "/organization/account"))
        try:
            return Account(available=float(entity["available"]), currency=str(entity.get("currency", "")),
                           organization=_organization(entity.get("organization")))
        except (KeyError, TypeError, ValueError):
            raise OutcomeUnknown("Instasent's account answer has no readable balance.") from None

    def sms_prices(self) -> list[Price]:
        """``GET /sms/price-profile/me/countries``: price per message part, per country."""
        return wire.prices(self._request("GET", "/sms/price-profile/me/countries"))

    def lookup_prices(self) -> list[Price]:
        """``GET /lookup/price-profile/me/countries``: price per lookup, per country."""
        return wire.prices(self._request("GET", "/lookup/price-profile/me/countries"))

    # -- the one place where HTTP becomes our errors -----------------------------------------
    def _request(self, method: str, path: str, payload: Any = None,
                 params: Params | None = None, deadline: float | None = None, raw: bool = False) -> Any:
        """The decoded JSON answer (``raw``: its bytes, for a caller that decodes it itself)."""
        endpoint = f"{method} {wire.endpoint_name(path)}"
        content = None if payload is None else orjson.dumps(payload)
        response: httpx.Response
        with translate_transport_error(endpoint):
            if deadline is None:
                response = self._http.request(method, path, content=content, params=params)
            else:
                response = self._request_by(deadline, endpoint, method, path, content, params)
        for hook in self._on_answer:
            hook(endpoint, response.status_code)
        self._remember_rate_limit(endpoint, response)
        raise_for_status(endpoint, response)
        log.debug("instasent %s -> %d", endpoint, response.status_code)
        if raw:
            return response.content
        if not response.content:
            return {}
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise OutcomeUnknown(f"Instasent answered {endpoint} with a body that is not JSON.",
                                 response.status_code) from None

    def _request_by(self, by: float, endpoint: str, method: str, path: str, content: bytes | None,
                    params: Params | None) -> httpx.Response:
        """One request that ends by ``by`` (``time.monotonic()``), whatever the server does.

        httpx's timeouts bound each read, not the whole exchange: the deadline travels with the
        request to :class:`InstasentTransport`, which cuts every socket operation to the time left.
        Connecting and writing get a quarter of the time each, so a request that reaches Instasent
        at all reaches it well before the deadline.

        Raises ConnectionFailed when no time is left (nothing sent), OutcomeUnknown when no answer came by then.
        """
        remaining = by - time.monotonic()
        if remaining <= 0:
            raise ConnectionFailed(f"no time was left to send {endpoint}; nothing was sent.")
        configured = self._http.timeout
        quarter = remaining / 4
        timeout = httpx.Timeout(connect=min(configured.connect or quarter, quarter),
                                read=min(configured.read or remaining, remaining),
                                write=min(configured.write or quarter, quarter),
                                pool=min(configured.pool or quarter, quarter))
        try:
            return self._http.request(method, path, content=content, params=params, timeout=timeout,
                                      extensions={"deadline": by})
        except httpx.ReadTimeout:
            if time.monotonic() >= by - 0.01:  # the deadline, not a read timeout of its own
                raise _late(endpoint, remaining) from None
            raise

    def _remember_rate_limit(self, endpoint: str, response: httpx.Response) -> None:
        info = parse_rate_limit(response.headers)
        if info is not None:
            self.rate_limits[endpoint] = info
            self.last_rate_limit = info


def _late(endpoint: str, deadline_s: float) -> OutcomeUnknown:
    return OutcomeUnknown(f"Instasent did not answer {endpoint} within its {deadline_s:.1f} s deadline; "
                          "it may have been processed.")


def _environment_proxy(base_url: str) -> httpcore.Proxy | None:
    """The proxy the environment names for ``base_url`` (``HTTPS_PROXY``, ``ALL_PROXY``...,
    unless ``NO_PROXY`` exempts its host); None when there is none."""
    url = httpx.URL(base_url)
    proxies = urllib.request.getproxies()
    address = proxies.get(url.scheme) or proxies.get("all")
    if not address or urllib.request.proxy_bypass(url.host):
        return None
    return httpcore.Proxy(address)


def _organization(value: Any) -> str | None:
    """The organization an account answer names: an object's ``id`` (else its ``name``), or a string;
    None when it names none (the documented answer carries only the balance)."""
    if isinstance(value, dict):
        value = value.get("id") or value.get("name")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return (value.strip() or None) if isinstance(value, str) else None
