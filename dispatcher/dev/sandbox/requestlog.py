"""The sandbox's request log: one compact row per API request, for measuring a client's pace.

Rows live in parallel typed arrays (about 24 bytes each), so the default cap of two million rows
costs about 48 MB. When the cap is reached the oldest tenth is dropped.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import Any

#: Rows kept before the oldest are dropped.
MAX_ROWS = 2_000_000


class RequestLog:
    """Append-only log of ``(time, endpoint, status, items, org)`` rows, oldest first."""

    def __init__(self, max_rows: int = MAX_ROWS) -> None:
        self.max_rows = max_rows
        self._names: list[str] = []
        self._name_index: dict[str, int] = {}
        #: Organization names (None: no organization), indexed like the endpoints.
        self._orgs: list[str | None] = []
        self._org_index: dict[str | None, int] = {}
        self._clear_arrays()

    def _clear_arrays(self) -> None:
        self._t = array("d")
        self._endpoint = array("I")
        self._status = array("H")
        self._items = array("I")
        self._org = array("I")

    def __len__(self) -> int:
        return len(self._t)

    def clear(self) -> None:
        """Drop every row."""
        self._clear_arrays()

    def add(self, t: float, endpoint: str, status: int, items: int, org: str | None = None) -> None:
        """Append a row: Unix time ``t`` in seconds, ``"POST /sms/bulk"``, HTTP status, body items and
        the organization of the request's token (None: a refused token, or a sandbox without projects)."""
        index = self._name_index.get(endpoint)
        if index is None:
            index = self._name_index[endpoint] = len(self._names)
            self._names.append(endpoint)
        org_index = self._org_index.get(org)
        if org_index is None:
            org_index = self._org_index[org] = len(self._orgs)
            self._orgs.append(org)
        if len(self._t) >= self.max_rows:
            drop = max(1, self.max_rows // 10)
            for column in (self._t, self._endpoint, self._status, self._items, self._org):
                del column[:drop]
        self._t.append(t)
        self._endpoint.append(index)
        self._status.append(status)
        self._items.append(min(items, 0xFFFFFFFF))
        self._org.append(org_index)

    def rows(self, since: float | None = None, offset: int = 0, limit: int | None = None,
             with_org: bool = False) -> list[dict[str, Any]]:
        """Rows as ``{"t", "endpoint", "status", "items"}``, plus ``"org"`` when ``with_org``, oldest first.

        ``since`` keeps rows at or after that Unix time; ``offset`` and ``limit`` then page them.
        """
        start = bisect_left(self._t, since) if since is not None else 0
        start += max(0, offset)
        stop = len(self._t) if limit is None else min(len(self._t), start + max(0, limit))
        names, t, endpoint, status, items = self._names, self._t, self._endpoint, self._status, self._items
        rows = [
            {"t": t[i], "endpoint": names[endpoint[i]], "status": status[i], "items": items[i]}
            for i in range(start, stop)
        ]
        if with_org:
            orgs, org = self._orgs, self._org
            for i, row in zip(range(start, stop), rows, strict=True):
                row["org"] = orgs[org[i]]
        return rows
