"""The sandbox's request log: one compact row per API request, for measuring a client's pace.

Rows live in parallel typed arrays (about 20 bytes each), so the default cap of two million rows
costs about 40 MB. When the cap is reached the oldest tenth is dropped.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import Any

#: Rows kept before the oldest are dropped.
MAX_ROWS = 2_000_000


class RequestLog:
    """Append-only log of ``(time, endpoint, status, items)`` rows, oldest first."""

    def __init__(self, max_rows: int = MAX_ROWS) -> None:
        self.max_rows = max_rows
        self._names: list[str] = []
        self._name_index: dict[str, int] = {}
        self._clear_arrays()

    def _clear_arrays(self) -> None:
        self._t = array("d")
        self._endpoint = array("I")
        self._status = array("H")
        self._items = array("I")

    def __len__(self) -> int:
        return len(self._t)

    def clear(self) -> None:
        """Drop every row."""
        self._clear_arrays()

    def add(self, t: float, endpoint: str, status: int, items: int) -> None:
        """Append a row: Unix time ``t`` in seconds, ``"POST /sms/bulk"``, HTTP status, body items."""
        index = self._name_index.get(endpoint)
        if index is None:
            index = self._name_index[endpoint] = len(self._names)
            self._names.append(endpoint)
        if len(self._t) >= self.max_rows:
            drop = max(1, self.max_rows // 10)
            for column in (self._t, self._endpoint, self._status, self._items):
                del column[:drop]
        self._t.append(t)
        self._endpoint.append(index)
        self._status.append(status)
        self._items.append(min(items, 0xFFFFFFFF))

    def rows(self, since: float | None = None, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Rows as ``{"t", "endpoint", "status", "items"}``, oldest first.

        ``since`` keeps rows at or after that Unix time; ``offset`` and ``limit`` then page them.
        """
        start = bisect_left(self._t, since) if since is not None else 0
        start += max(0, offset)
        stop = len(self._t) if limit is None else min(len(self._t), start + max(0, limit))
        names, t, endpoint, status, items = self._names, self._t, self._endpoint, self._status, self._items
        return [
            {"t": t[i], "endpoint": names[endpoint[i]], "status": status[i], "items": items[i]}
            for i in range(start, stop)
        ]
