"""Test doubles shared by several test modules."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

#: A recipient whose item Instasent always finds too large (413), even alone.
TOO_LARGE = "+34677777777"

Step = Callable[[list[dict[str, Any]]], httpx.Response | None]


@dataclass
class FakeInstasent:
    """Accepts bulks like Instasent; ``script`` decides, per bulk request, what goes wrong."""

    script: list[str] = field(default_factory=list)
    accepted: dict[str, int] = field(default_factory=dict)
    ids: itertools.count = field(default_factory=itertools.count)
    bulk_requests: int = 0
    list_requests: int = 0
    #: ``GET /sms`` lists a stranger's message too, as a server that ignores the clientId filter would.
    ignore_filter: bool = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "GET" and path.endswith("/sms"):
            self.list_requests += 1
            wanted = request.url.params.get_list("clientId")
            found = [{"id": f"id-{c}", "clientId": c, "to": "+34600000000", "status": "enqueued"}
                     for c in wanted if c in self.accepted]
            if self.ignore_filter:
                found.append({"id": "id-other", "clientId": "someone-else", "to": "+34600000001", "status": "sent"})
            page, per_page = int(request.url.params.get("page", 1)), int(request.url.params.get("per_page", 100))
            return httpx.Response(200, json={"entities": found[(page - 1) * per_page:page * per_page]})
        assert path.endswith("/sms/bulk")
        self.bulk_requests += 1
        step = self.script.pop(0) if self.script else "ok"
        items = orjson.loads(request.content)
        if step == "connect":
            raise httpx.ConnectError("refused", request=request)
        if step == "429":
            return httpx.Response(429, headers={"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "0",
                                                "X-RateLimit-Reset": "0"})
        if step == "402":
            return httpx.Response(402, json={"message": "Insufficient balance"})
        if step == "401":
            return httpx.Response(401, json={"message": "Unauthorized"})
        if (step == "413" and len(items) > 10) or any(item["to"] == TOO_LARGE for item in items):
            return httpx.Response(413, json={"message": "too large"})
        entities, errors = [], []
        for index, item in enumerate(items):
            cid = item["clientId"]
            if item["to"] == "+34699999999":
                errors.append({"index": index, "clientId": cid, "to": item["to"], "errors": {"to": ["invalid"]}})
            elif cid in self.accepted:
                self.accepted[cid] += 1  # counted, to prove we never resend an accepted message
                errors.append({"index": index, "clientId": cid, "errors": {"clientId": ["already used"]}})
            else:
                self.accepted[cid] = 1
                entities.append({"id": f"id-{cid}", "clientId": cid, "to": item["to"], "status": "enqueued"})
        if step == "500-after-accept":
            return httpx.Response(500, json={"message": "boom"})
        if step == "timeout-after-accept":
            raise httpx.ReadTimeout("timed out", request=request)
        if step == "drop-half":
            entities = entities[: len(entities) // 2]
        if step == "ignore-half":  # the second half is neither accepted nor mentioned
            for entity in entities[len(entities) // 2:]:
                del self.accepted[entity["clientId"]]
            entities = entities[: len(entities) // 2]
        return httpx.Response(201, json={"entities": entities, "errors": errors})


