"""Is anything going to happen? Worker heartbeats, and why a campaign sent nothing.

Workers write a heartbeat (``tasks.app`` runs a thread for it) into a sorted set under the key
prefix, scored by when it runs out, in Redis' own clock so that hosts with skewed clocks agree.
The CLI (and anything else) reads it to tell "no worker is running" from "the workers are busy".
"""

from __future__ import annotations

import time
from typing import Any

import redis

from dispatcher.errors import DispatcherError
from dispatcher.keys import Keys
from dispatcher.schema.names import SENDING, State
from dispatcher.schema.scripts import script
from dispatcher.sending.store import CampaignInfo, CampaignStore

#: Seconds between two heartbeats of a worker.
HEARTBEAT_EVERY_S = 5.0
#: Seconds a heartbeat counts: three missed beats and the worker is taken for gone.
HEARTBEAT_TTL_S = 15.0
#: Seconds a command waits for a first heartbeat before it says that no worker runs
#: (a worker started a moment ago may not have written one yet).
FIRST_HEARTBEAT_WAIT_S = 3.0
#: What to tell a user when no worker consumes this install's queue.
NO_WORKER = "no worker is running: start one with `dispatcher worker` (it runs in the foreground, in its own terminal)"

class NoWorker(DispatcherError):
    """No worker consumes this install's queue, so nothing queued will be sent."""


class WorkerRegistry:
    """Heartbeats of the workers of one install (one key prefix)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis: Any = client
        self.keys = keys
        self._beat = client.register_script(script("beat"))
        self._alive = client.register_script(script("alive"))

    def beat(self, worker: str, ttl_s: float = HEARTBEAT_TTL_S) -> None:
        """Say that ``worker`` is alive for the next ``ttl_s`` seconds."""
        self._beat(keys=[self.keys.workers()], args=[worker, ttl_s])

    def publish_limits(self, per_min: int, messages_per_s: float, ttl_s: float = HEARTBEAT_TTL_S) -> None:
        """Say which rate limits the workers send with (requests per minute, messages per second, 0
        for none); they expire with the heartbeat, so a console never shows a limit nobody runs."""
        key = self.keys.worker_limits()
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, mapping={"per_min": per_min, "messages_per_s": messages_per_s, "at": time.time()})
        pipe.expire(key, max(1, int(ttl_s)))
        pipe.execute()

    def limits(self) -> tuple[int, float] | None:
        """``(requests per minute, messages per second)`` the workers last published, or None."""
        raw = self.redis.hmget(self.keys.worker_limits(), "per_min", "messages_per_s")
        if raw[0] is None:
            return None
        return int(float(raw[0])), float(raw[1] or 0)

    def leave(self, worker: str) -> None:
        """Remove ``worker`` at once (a clean shutdown)."""
        self.redis.zrem(self.keys.workers(), worker)

    def alive(self) -> list[str]:
        """Ids of the workers whose heartbeat has not run out."""
        return sorted(w.decode() for w in self._alive(keys=[self.keys.workers()]))

    def wait_for_any(self, timeout_s: float = FIRST_HEARTBEAT_WAIT_S, poll_s: float = 0.25) -> bool:
        """True as soon as one worker is alive; False when none is after ``timeout_s`` seconds."""
        deadline = time.monotonic() + timeout_s
        while not self.alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)
        return True


def needs_worker(info: CampaignInfo) -> bool:
    """True when the campaign has messages that only a worker can move on."""
    unsettled = info.pending + info.counts.get("unknown", 0)
    return info.state in {s.value for s in SENDING} and unsettled > info.waiting


def last_error(store: CampaignStore, campaign_id: str, chunk: int = 100) -> str:
    """The error recorded by the highest-numbered batch that recorded one, or ``""``.

    Batches settle roughly in order, so this is the most recent reason a batch was not sent (an
    unreachable API, a wrong base URL, a refused token). Reads ``chunk`` batches per round trip.
    """
    info = store.get(campaign_id)
    top = info.enqueued or info.batches
    for high in range(top, 0, -chunk):
        numbers = range(high - 1, max(-1, high - 1 - chunk), -1)
        pipe = store.redis.pipeline(transaction=False)
        for n in numbers:
            pipe.hget(store.keys.batch(campaign_id, n), "err")
        for raw in pipe.execute():
            if raw:
                return str(raw.decode())
    return ""


def stopped_badly(info: CampaignInfo) -> bool:
    """True when a campaign stopped on its own without sending: it completed and every message failed
    or was rejected by Instasent (none sent), or the dispatcher (not a person) paused or failed it."""
    if info.state == State.FAILED.value:
        return True
    if info.state == State.PAUSED.value and info.reason not in ("", "paused by user"):
        return True
    counts = info.counts
    return (info.state == State.COMPLETED.value and counts.get("sent", 0) == 0
            and counts.get("failed", 0) + counts.get("rejected", 0) > 0)


def campaign_health(store: CampaignStore, info: CampaignInfo, with_error: bool = True,
                    workers: int | None = None) -> dict[str, Any]:
    """What ``status`` adds to a campaign: ``workers`` alive for this install, ``no_worker`` (True
    when the campaign has messages only a worker can move and none runs) and ``last_error`` (the
    last error a batch recorded, when some message failed or the campaign stopped badly; else None;
    not looked for without ``with_error``). ``workers``: the live workers when already counted."""
    if workers is None:
        workers = len(WorkerRegistry(store.redis, store.keys).alive())
    if not with_error:
        return {"workers": workers, "no_worker": workers == 0 and needs_worker(info)}
    counts = info.counts
    failures = bool(counts.get("failed") or counts.get("unknown") or counts.get("rejected")) or stopped_badly(info)
    return {"workers": workers, "no_worker": workers == 0 and needs_worker(info),
            "last_error": (last_error(store, info.id) or None) if failures else None}
