"""Test doubles shared by several test modules."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

#: A recipient whose item Instasent always finds too large (413), even alone.
TOO_LARGE = "+34677777777"

Step = Callable[[list[dict[str, Any]]], httpx.Response | None]

#: The number the fake rejects unless told otherwise.
BAD_NUMBER = "+34699999999"


@dataclass
class Window:
    """One endpoint's per-minute rate limit, counted like Instasent: a window opens with its first
    request and lasts ``length_s``; every answer carries the ``X-RateLimit-*`` headers."""

    limit: int = 10**6
    length_s: float = 60.0
    opened: float | None = None
    used: int = 0

    def take(self, now: float) -> bool:
        """Count one request; False when it is over the limit (answer 429, nothing processed)."""
        if self.opened is None or now >= self.opened + self.length_s:
            self.opened, self.used = now, 0
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def headers(self, now: float) -> dict[str, str]:
        opened = now if self.opened is None else self.opened
        return {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(max(0, self.limit - self.used)),
                "X-RateLimit-Reset": f"{opened + self.length_s:.3f}"}


@dataclass
class FakeInstasent:
    """Accepts bulks like Instasent; ``script`` decides, per bulk request, what goes wrong.

    Bulk steps: ``ok``, ``connect`` (refused, nothing sent), ``429`` (throttled, with a real reset
    ``throttle_s`` ahead), ``402``, ``401``, ``413`` (when more than 10 items), ``500-after-accept``,
    ``timeout-after-accept``, ``drop-half`` (half the accepted items missing from the answer),
    ``ignore-half`` (the second half neither accepted nor mentioned); an item to :data:`TOO_LARGE`
    always gets a 413. A ``:N`` suffix (``timeout-after-accept:6``) makes Instasent take only the
    first N items.

    ``GET /sms`` pages (newest first, ``per_page`` capped at ``page_cap``), honours the ``clientId``
    filter unless ``ignore_filter`` (then it lists everything, plus a stranger's message), and
    follows ``list_script``: ``ok``, ``connect``, ``500``, ``timeout`` or ``429``. A message accepted
    by a bulk is missing from the listing for the next ``list_lag`` listing requests (Instasent's
    list is not instantly consistent).

    Every answer carries ``X-RateLimit-*`` headers from ``bulk_window`` / ``list_window``; a request
    over its window's limit gets a 429 with the window's real reset time and is not processed.
    """

    script: list[str] = field(default_factory=list)
    #: clientId -> times Instasent accepted it or answered "already used" (1 means sent once).
    accepted: dict[str, int] = field(default_factory=dict)
    ids: itertools.count = field(default_factory=itertools.count)
    bulk_requests: int = 0
    list_requests: int = 0
    #: Numbers rejected as invalid, with the reason the API gives.
    invalid: dict[str, str] = field(default_factory=lambda: {BAD_NUMBER: "invalid"})
    #: Seconds ahead of now that a scripted 429's ``X-RateLimit-Reset`` points.
    throttle_s: float = 0.2
    #: A scripted 429 carries only ``X-RateLimit-Reset`` (not ``-Limit`` and ``-Remaining``).
    throttle_reset_only: bool = False
    list_script: list[str] = field(default_factory=list)
    list_lag: int = 0
    page_cap: int = 100
    #: ``GET /sms`` ignores the clientId filter: it lists every visible message and a stranger's too.
    ignore_filter: bool = False
    bulk_window: Window = field(default_factory=Window)
    list_window: Window = field(default_factory=Window)
    #: clientId -> how many times it was in a POSTed bulk, whatever the answer.
    posted: Counter[str] = field(default_factory=Counter)
    #: 429 answers given, by endpoint (``bulk`` or ``list``).
    throttled: Counter[str] = field(default_factory=Counter)
    #: Time (``time.time()``) of every request that got through the limit, by endpoint.
    request_times: dict[str, list[float]] = field(default_factory=lambda: {"bulk": [], "list": []})
    #: clientId -> how many more listings miss it (see ``list_lag``).
    hidden: dict[str, int] = field(default_factory=dict)
    #: Called once per ``GET /sms`` before it is answered: what happens elsewhere meanwhile.
    on_list: Callable[[], None] | None = None

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "GET" and path.endswith("/sms"):
            return self._list(request)
        assert path.endswith("/sms/bulk")
        return self._bulk(request)

    def _throttle(self, endpoint: str, window: Window, now: float) -> httpx.Response | None:
        if window.take(now):
            self.request_times[endpoint].append(now)
            return None
        self.throttled[endpoint] += 1
        return httpx.Response(429, headers=window.headers(now))

    def _scripted_429(self, endpoint: str, window: Window, now: float) -> httpx.Response:
        self.throttled[endpoint] += 1
        headers = {"X-RateLimit-Reset": f"{now + self.throttle_s:.3f}"}
        if not self.throttle_reset_only:
            headers.update({"X-RateLimit-Limit": str(window.limit), "X-RateLimit-Remaining": "0"})
        return httpx.Response(429, headers=headers)

    def _list(self, request: httpx.Request) -> httpx.Response:
        now = time.time()
        self.list_requests += 1
        if self.on_list is not None:
            self.on_list()
        throttled = self._throttle("list", self.list_window, now)
        if throttled is not None:
            return throttled
        step = self.list_script.pop(0) if self.list_script else "ok"
        if step == "connect":
            raise httpx.ConnectError("refused", request=request)
        if step == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if step == "429":
            return self._scripted_429("list", self.list_window, now)
        if step == "500":
            return httpx.Response(500, json={"message": "boom"}, headers=self.list_window.headers(now))
        visible = [c for c in reversed(self.accepted) if self.hidden.get(c, 0) == 0]
        for c in self.hidden:
            self.hidden[c] = max(0, self.hidden[c] - 1)
        wanted = set(request.url.params.get_list("clientId"))
        if wanted and not self.ignore_filter:
            visible = [c for c in visible if c in wanted]
        per_page = min(int(request.url.params.get("per_page", "100")), self.page_cap)
        page = int(request.url.params.get("page", "1"))
        chosen = visible[(page - 1) * per_page:page * per_page]
        found = [{"id": f"id-{c}", "clientId": c, "to": "+34600000000", "status": "enqueued"} for c in chosen]
        if self.ignore_filter:
            found.append({"id": "id-other", "clientId": "someone-else", "to": "+34600000001", "status": "sent"})
        return httpx.Response(200, json={"entities": found}, headers=self.list_window.headers(now))

    def _bulk(self, request: httpx.Request) -> httpx.Response:
        now = time.time()
        self.bulk_requests += 1
        throttled = self._throttle("bulk", self.bulk_window, now)
        if throttled is not None:
            return throttled
        step = self.script.pop(0) if self.script else "ok"
        step, _, take = step.partition(":")
        items = orjson.loads(request.content)
        if take:  # Instasent took only the first ``take`` items before it failed
            items = items[:int(take)]
        headers = self.bulk_window.headers(now)
        if step == "connect":
            raise httpx.ConnectError("refused", request=request)
        if step == "429":
            return self._scripted_429("bulk", self.bulk_window, now)
        if step == "402":
            return httpx.Response(402, json={"message": "Insufficient balance"}, headers=headers)
        if step == "401":
            return httpx.Response(401, json={"message": "Unauthorized"}, headers=headers)
        if (step == "413" and len(items) > 10) or any(item["to"] == TOO_LARGE for item in items):
            return httpx.Response(413, json={"message": "too large"}, headers=headers)
        entities, errors = [], []
        for index, item in enumerate(items):
            cid = item["clientId"]
            self.posted[cid] += 1
            if item["to"] in self.invalid:
                errors.append({"index": index, "clientId": cid, "to": item["to"],
                               "errors": {"to": [self.invalid[item["to"]]]}})
            elif cid in self.accepted:
                self.accepted[cid] += 1  # counted, to prove we never resend an accepted message
                errors.append({"index": index, "clientId": cid, "errors": {"clientId": ["already used"]}})
            else:
                self.accepted[cid] = 1
                if self.list_lag:
                    self.hidden[cid] = self.list_lag
                entities.append({"id": f"id-{cid}", "clientId": cid, "to": item["to"], "status": "enqueued"})
        if step == "500-after-accept":
            return httpx.Response(500, json={"message": "boom"}, headers=headers)
        if step == "timeout-after-accept":
            raise httpx.ReadTimeout("timed out", request=request)
        if step == "drop-half":
            entities = entities[: len(entities) // 2]
        if step == "ignore-half":  # the second half is neither accepted nor mentioned
            for entity in entities[len(entities) // 2:]:
                del self.accepted[entity["clientId"]]
                self.hidden.pop(entity["clientId"], None)
            entities = entities[: len(entities) // 2]
        return httpx.Response(201, json={"entities": entities, "errors": errors}, headers=headers)

    def accept_directly(self, client_ids: list[str]) -> None:
        """Record ``client_ids`` as accepted, as if a POST whose answer we never saw got through."""
        for cid in client_ids:
            self.accepted[cid] = self.accepted.get(cid, 0) + 1
            self.posted[cid] += 1
