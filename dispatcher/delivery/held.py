"""Delivery reports held for a campaign this Redis does not know yet, bounded in age and number.

A report can name a campaign that is not here yet (it is being created) or no longer (its data
expired, or it belongs to another install using the same Instasent token). Such reports are
kept in a hash (field ``clientId|status|eventAt``, value the report as JSON) with an index of
when each was first held (a sorted set). Every hold drops the entries older than
:data:`HOLD_TTL_S` and then the oldest beyond :data:`MAX_HELD`, so the hold cannot grow without
bound, and a report held again keeps its first time, so a report retried forever still expires.
The receiver retries the hold on a timer (``dispatcher.webhook.app``); ``reconcile``
retries it too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import redis

from dispatcher.keys import Keys
from dispatcher.schema.scripts import script
from dispatcher.sending.payload import parse_client_id

#: Seconds a report is held at most, counted from when it was first held.
HOLD_TTL_S = 48 * 3600
#: Reports held at most; the oldest go first (about 250 bytes each in Redis).
MAX_HELD = 100_000
#: Fields read per ``HSCAN`` step while retrying.
SCAN_COUNT = 1000

class HeldReports:
    """The hold of one key prefix. Entries are ``(field, JSON)``; see the module docstring."""

    def __init__(self, client: redis.Redis, keys: Keys, ttl_s: float = HOLD_TTL_S, cap: int = MAX_HELD) -> None:
        self.redis: Any = client
        self.keys = [keys.dlr_held(), keys.dlr_held_at()]
        self.ttl_s = ttl_s
        self.cap = cap
        self._hold = client.register_script(script("trim_held", "hold"))
        self._sweep = client.register_script(script("trim_held", "sweep_held"))
        self._campaign = keys.campaign

    def hold(self, field: str, blob: bytes, now: float | None = None) -> int:
        """Hold one report; returns how many old entries were dropped to stay within the bounds."""
        now = time.time() if now is None else now
        return int(self._hold(keys=self.keys, args=[now, self.ttl_s, self.cap, field, blob]))

    def count(self) -> int:
        """Reports held now."""
        return int(self.redis.hlen(self.keys[0]))

    def retry(self, apply: Callable[[bytes], object], now: float | None = None) -> int:
        """Drop what is too old, then take out and ``apply`` each report whose campaign now exists.

        Returns how many were applied. A report taken out by another process at the same time is
        applied once (``HDEL`` decides who has it).
        """
        now = time.time() if now is None else now
        self._sweep(keys=self.keys, args=[now, self.ttl_s, self.cap])
        applied = 0
        for page in self._pages():
            for _, blob in self._claim(page):
                apply(blob)
                applied += 1
        return applied

    def _pages(self) -> Iterator[list[tuple[bytes, bytes]]]:
        page: list[tuple[bytes, bytes]] = []
        for field, blob in self.redis.hscan_iter(self.keys[0], count=SCAN_COUNT):
            page.append((field, blob))
            if len(page) >= SCAN_COUNT:
                yield page
                page = []
        if page:
            yield page

    def _claim(self, page: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """The entries of ``page`` whose campaign exists, removed from the hold."""
        campaigns = {}
        for field, blob in page:
            where = parse_client_id(str(orjson.loads(blob).get("client_id", "")))
            if where is not None:
                campaigns[field] = where[0]
        distinct = sorted(set(campaigns.values()))
        pipe = self.redis.pipeline(transaction=False)
        for campaign_id in distinct:
            pipe.exists(self._campaign(campaign_id))
        known = {campaign_id for campaign_id, found in zip(distinct, pipe.execute(), strict=True) if found}
        ready = [(field, blob) for field, blob in page if campaigns.get(field) in known]
        if not ready:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for field, _ in ready:
            pipe.hdel(self.keys[0], field)
            pipe.zrem(self.keys[1], field)
        taken = pipe.execute()[::2]
        return [entry for entry, removed in zip(ready, taken, strict=True) if removed]
