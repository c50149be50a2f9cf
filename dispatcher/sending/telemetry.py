"""Counters the workers keep in Redis so that any process (the console's ``/metrics``) can show them.

Each worker process counts in memory while its threads send batches (bulk answers by HTTP status,
seconds spent waiting for a rate-limit slot, each batch's duration) and adds the counts to one
Redis hash in one pipelined call when a task's batches are done (one flush per task, not per
batch: a round trip per batch cost Redis and the worker more than the counting). Telemetry never
fails a batch: a Redis error drops the counts since the last flush and nothing else.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections import Counter
from typing import Any

import redis

from dispatcher.keys import Keys
from dispatcher.sending import fairshare

log = logging.getLogger(__name__)

#: Upper bounds (seconds) of the batch-duration histogram's buckets; ``+Inf`` is implied.
BATCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Telemetry:
    """Per-process counters, flushed to ``keys.telemetry()``; one per worker process, thread-safe."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis: Any = client
        self._key = keys.telemetry()
        self._keys = keys
        #: Bulk requests per campaign since the last flush (the lanes' fair shares).
        self._requests: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()
        self._seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    def bulk_answered(self, status: int) -> None:
        """Count one ``POST /sms/bulk`` answered with HTTP ``status``."""
        with self._lock:
            self._counts[f"bulk:{status}"] += 1

    def requests_made(self, campaign_id: str, requests: int) -> None:
        """Count ``requests`` bulk requests made for campaign ``campaign_id``."""
        if requests > 0:
            with self._lock:
                self._requests[campaign_id] += requests

    def waited(self, seconds: float) -> None:
        """Add seconds spent waiting for a rate-limit slot."""
        if seconds > 0:
            with self._lock:
                self._seconds["limiter_wait_s"] = self._seconds.get("limiter_wait_s", 0.0) + seconds

    def batch_done(self, seconds: float) -> None:
        """Observe one batch attempt that took ``seconds`` from claim to record."""
        index = bisect.bisect_left(BATCH_BUCKETS, seconds)
        bucket = f"batch:le:{BATCH_BUCKETS[index]:g}" if index < len(BATCH_BUCKETS) else "batch:le:+Inf"
        with self._lock:
            self._counts[bucket] += 1
            self._counts["batch:count"] += 1
            self._seconds["batch:sum"] = self._seconds.get("batch:sum", 0.0) + seconds

    def flush(self) -> None:
        """Add the counts to Redis and start again from zero."""
        with self._lock:
            counts, seconds, requests = self._counts, self._seconds, self._requests
            self._counts, self._seconds, self._requests = Counter(), {}, Counter()
        if not counts and not seconds and not requests:
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for name, n in counts.items():
                pipe.hincrby(self._key, name, n)
            for name, value in seconds.items():
                pipe.hincrbyfloat(self._key, name, value)
            fairshare.record_requests(pipe, self._keys, requests)
            pipe.execute()
        except redis.exceptions.RedisError as exc:  # telemetry must never fail or retry a batch
            log.warning("telemetry not recorded: %s", type(exc).__name__)


def read(client: redis.Redis, keys: Keys) -> dict[str, float]:
    """Every counter the workers recorded, by name (``bulk:200``, ``limiter_wait_s``, ``batch:le:0.5``...)."""
    raw: Any = client.hgetall(keys.telemetry())
    return {k.decode(): float(v) for k, v in raw.items()}
