"""Delivery reports held until they can be matched: bounded in age and number.

A report is held when it names a campaign this Redis does not know (yet: it is being created; or
no more: its data expired, or it belongs to another install using the same Instasent token), and
when its message has no send record yet (an early report, which can arrive before the worker
records the send, or an ``unknown`` outcome that reconciliation will settle). A report never
makes a message ``sent``: once a send is recorded, the held report is matched against it (the
Instasent id compared) and applied or refused; one that no send ever matches expires.
Held reports are kept in a hash (field ``clientId|status|eventAt|id``, value the report as JSON)
with an index of when each was first held (a sorted set). Every hold drops the entries older than
:data:`HOLD_TTL_S` and then the oldest beyond :data:`MAX_HELD`, counting what it drops
(``REFUSED_REPORTS["expired"]`` in the telemetry hash), so the hold cannot grow without bound; a
report held again, or tried and still unmatched, keeps its first time, so it still expires.
The receiver retries the hold on a timer (``dispatcher.webhook.app``); ``reconcile`` retries it too.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import redis

from dispatcher.keys import Keys
from dispatcher.schema.scripts import script

#: Seconds a report is held at most, counted from when it was first held.
HOLD_TTL_S = 48 * 3600
#: Reports held at most; the oldest go first (about 250 bytes each in Redis).
MAX_HELD = 100_000
#: Fields read per ``HSCAN`` step while retrying.
SCAN_COUNT = 1000

#: The keys and arguments of ``lua/apply_report.lua`` for one held report (see ``reports.apply_call``).
ApplyCall = tuple[list[str], list[str | int]]

class HeldReports:
    """The hold of one key prefix. Entries are ``(field, JSON)``; see the module docstring."""

    def __init__(self, client: redis.Redis, keys: Keys, ttl_s: float = HOLD_TTL_S, cap: int = MAX_HELD) -> None:
        self.redis: Any = client
        self.keys = [keys.dlr_held(), keys.dlr_held_at(), keys.telemetry()]
        self.ttl_s = ttl_s
        self.cap = cap
        self._hold = client.register_script(script("trim_held", "hold"))
        self._sweep = client.register_script(script("trim_held", "sweep_held"))
        self._apply = client.register_script(script("apply_report"))

    def hold(self, field: str, blob: bytes, now: float | None = None) -> int:
        """Hold one report; returns how many old entries were dropped to stay within the bounds."""
        now = time.time() if now is None else now
        return int(self._hold(keys=self.keys, args=[now, self.ttl_s, self.cap, field, blob]))

    def count(self) -> int:
        """Reports held now."""
        return int(self.redis.hlen(self.keys[0]))

    def retry(self, plan: Callable[[bytes], ApplyCall | None], now: float | None = None) -> Counter[str]:
        """Drop what is too old, then try each held report again; returns how many had each outcome.

        ``plan`` gives the apply call of a held report (None: leave it to expire). Each report is
        tried with ``lua/apply_report.lua``, which takes it out of the hold in the same step once
        it is decided (applied, duplicate, stale or mismatch) and leaves it, with its first time,
        while its campaign is missing or its message unsent. A report taken by another process at
        the same time is applied once (the script's ``HEXISTS`` decides who has it: ``gone``).

        Raises:
            redis.exceptions.RedisError: when Redis cannot be reached.
        """
        now = time.time() if now is None else now
        self._sweep(keys=self.keys, args=[now, self.ttl_s, self.cap])
        outcomes: Counter[str] = Counter()
        for page in self._pages():
            calls = [(field, call) for field, blob in page if (call := plan(blob)) is not None]
            outcomes.update(self._try(calls))
        return outcomes

    def _try(self, calls: Sequence[tuple[bytes, ApplyCall]]) -> list[str]:
        if not calls:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for field, (keys, args) in calls:
            self._apply(keys=[*keys, self.keys[0], self.keys[1]], args=[*args, field], client=pipe)
        return [reply.decode() for reply in pipe.execute()]

    def _pages(self) -> Iterator[list[tuple[bytes, bytes]]]:
        page: list[tuple[bytes, bytes]] = []
        for field, blob in self.redis.hscan_iter(self.keys[0], count=SCAN_COUNT):
            page.append((field, blob))
            if len(page) >= SCAN_COUNT:
                yield page
                page = []
        if page:
            yield page
