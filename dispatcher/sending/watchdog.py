"""The watchdog: find stranded work and drive it again, with nobody typing anything.

Work is stranded when the task that should carry it was lost: a publish that failed, a broker
that forgot its last second, a worker that died with a task the broker will not redeliver soon.
Each worker runs :meth:`Watchdog.sweep` periodically (see ``tasks.watchdog``); a Redis lock lets one
sweep run at a time. A sweep

* queues parked batches whose send window opened (beat is optional);
* sets every lane's fair-share windows again (``sending.fairshare``: a backstop for missed events);
* tops up each running campaign's queue window (and completes a campaign whose batches all settled);
* re-queues every batch of a running (or cancelled, still unsettled) campaign that is not done, not
  settled, not parked, not held under a live lease, and quiet for ``stale_after_s``: the batch's
  last record, its last re-drive and its campaign's last update are all older than that;
* notices that Redis lost its data (see :mod:`dispatcher.sending.durability`);
* after a restart or a failover (a new era, see ``lua/prelude.lua``), re-queues every such batch at
  once, quiet or not: the tasks the old server held may be gone, and the claim sorts out the rest.

Re-queueing is idempotent with the claim: a batch whose original task still exists gets two
tasks, and the claim lets one through. A batch that gave up (settled with unknown messages) is
left to a person (``dispatcher reconcile``), so nothing is retried without a cap.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from dispatcher.schema.names import BatchState, State
from dispatcher.schema.scripts import era
from dispatcher.sending import campaigns, fairshare
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.durability import Epoch
from dispatcher.sending.enqueuer import Enqueuer
from dispatcher.sending.store import CampaignInfo, CampaignStore
from dispatcher.settings import Settings

#: Campaigns looked at per sweep, newest first.
SCAN_LIMIT = 500


@dataclass
class Sweep:
    """What one sweep did (``at`` in Unix seconds)."""

    at: float
    released: int = 0
    #: campaign id -> batch numbers queued again.
    redriven: dict[str, list[int]] = field(default_factory=dict)
    data_lost: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "released": self.released, "redriven": self.redriven, "data_lost": self.data_lost}


class Watchdog:
    """One process's watchdog; :meth:`sweep` is safe to call from many processes at once."""

    def __init__(self, store: CampaignStore, ops: BatchOps, enqueuer: Enqueuer, settings: Settings,
                 name: str = "") -> None:
        self.store = store
        self.ops = ops
        self.enqueuer = enqueuer
        self.settings = settings
        self.name = name
        self.epoch = Epoch(store.redis, store.keys)
        #: The Redis era this process's last sweep saw (None before its first).
        self.era: str | None = None

    @property
    def stale_after_s(self) -> float:
        """Seconds of quiet after which a batch that is not held is taken for stranded.

        Longer than any wait a live task takes on purpose (a backoff, a slot wait, a lease).
        """
        s = self.settings
        return max(s.retry_backoff_max_s, s.reconcile_delay_s) + s.max_slot_wait_s + s.lease_s

    def sweep(self, now: float | None = None) -> Sweep | None:
        """Run one sweep if no other process is running one; None when another holds the lock."""
        redis, keys = self.store.redis, self.store.keys
        current = era(redis)
        token = f"{current}/{secrets.token_hex(8)}"
        ttl_ms = int(max(30.0, self.settings.lease_s) * 1000)
        if not redis.set(keys.watchdog_lock(), token, nx=True, px=ttl_ms):
            held = redis.get(keys.watchdog_lock())
            # A lock taken in another era was held by a sweep whose connection died with that server
            # (a restart, a failover): take it over rather than wait out its TTL with sending stalled.
            # A lock without an era (a worker of an earlier version) is respected.
            held_era, slash, _ = (held or b"").decode().partition("/")
            if not slash or held_era == current:
                return None
            redis.set(keys.watchdog_lock(), token, px=ttl_ms)
        try:
            now = time.time() if now is None else now
            new_era = self.era is not None and self.era != current
            self.era = current
            done = Sweep(at=now, data_lost=self.epoch.check(self.name))
            done.released = campaigns.release_parked(self.ops, self.enqueuer, now)
            recent = self.store.recent(SCAN_LIMIT)
            # Before the re-drive tops windows up: every sending campaign counted in its lane.
            fairshare.sweep(redis, keys, [(info.id, info.state.value) for info in recent])
            for info in recent:
                numbers = self._redrive(info, now, at_once=new_era)
                if numbers:
                    done.redriven[info.id] = numbers
            redis.set(keys.watchdog_last(), orjson.dumps(done.to_json()))
            return done
        finally:
            if redis.get(keys.watchdog_lock()) == token.encode():
                redis.delete(keys.watchdog_lock())

    def _redrive(self, info: CampaignInfo, now: float, at_once: bool = False) -> list[int]:
        """Queue the campaign's stranded batches again (``at_once``: quiet or not); returns their numbers."""
        # A queued campaign that never started may be held behind a schedule's running one: not ours.
        sending = info.state == State.RUNNING
        if not sending and not (info.state == State.CANCELLED and info.settled < info.batches):
            return []
        stranded = self.stranded(info, now, at_once=at_once)
        reserved = list(self.ops.reserve(info.id)) if sending else []
        numbers = sorted(set(stranded) | set(reserved))
        if numbers:
            self.enqueuer.enqueue(info.id, numbers)
            pipe = self.store.redis.pipeline(transaction=False)
            for n in stranded:
                pipe.hset(self.store.keys.batch(info.id, n), "wd", now)
            pipe.hset(self.store.keys.campaign(info.id), mapping={"wd_at": now, "wd_batches": len(stranded)})
            pipe.execute()
        return numbers

    def stranded(self, info: CampaignInfo, now: float, at_once: bool = False) -> list[int]:
        """Batches of ``info`` that nothing is carrying (see the module docstring); ``at_once``
        (after a restart or a failover) takes every batch not held, done, settled or parked."""
        quiet_since = now if at_once else now - self.stale_after_s
        campaign_active = max(info.updated_at or 0.0, info.started_at or 0.0, info.created_at)
        if campaign_active > quiet_since and not at_once:
            return []
        numbers = range(info.enqueued)
        pipe = self.store.redis.pipeline(transaction=False)
        for n in numbers:
            pipe.hmget(self.store.keys.batch(info.id, n), "st", "lease", "settled", "parked", "ut", "wd")
        found = []
        for n, (st, lease, settled, parked, ut, wd) in zip(numbers, pipe.execute(), strict=True):
            if st is None or st == BatchState.DONE.encode() or settled == b"1" or parked == b"1":
                continue
            if st == BatchState.IN_FLIGHT.encode() and int(lease or 0) / 1e6 > now:
                continue
            if max(float(ut or 0), float(wd or 0)) > quiet_since and not at_once:
                continue
            found.append(n)
        return found
