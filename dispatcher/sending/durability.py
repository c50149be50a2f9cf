"""Does the store keep its data across a restart, and did it lose some?

Exactly-once rests on Redis: a claim written before a POST must survive a crash. So workers,
``submit`` and ``webhook`` refuse a Redis that neither writes an append-only file nor has a replica
acknowledging writes, unless ``DISPATCHER_ALLOW_VOLATILE_REDIS=1`` says losing it is acceptable.
A total loss (a server restarted without its data, or flushed) is detected by the *epoch*, a
random value written once per data set: each process remembers the epoch it saw, and finding it
missing or changed means everything older is gone; the loss is recorded for ``status``.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson
import redis
import redis.sentinel

from dispatcher.errors import ConfigurationError
from dispatcher.keys import Keys
from dispatcher.settings import Settings

#: Loss records kept.
_LOSSES_KEPT = 20


def check_persistence(client: redis.Redis, settings: Settings) -> None:
    """Refuse a Redis that would forget campaigns on a restart.

    Raises:
        ConfigurationError: when the server has no append-only file and no replica acknowledges a
            write, and ``DISPATCHER_ALLOW_VOLATILE_REDIS`` is not set.
    """
    if settings.allow_volatile_redis:
        return
    r: Any = client
    try:
        if r.config_get("appendonly").get("appendonly") == "yes":
            return
    except redis.exceptions.ResponseError:
        pass  # CONFIG is disabled on some managed servers: a replica acknowledgement may still prove it
    try:
        # A master (Sentinel-managed or not) with DISPATCHER_REDIS_MIN_REPLICAS replicas counts as
        # durable: each POST waits for its claim to be on them (issue 23); one acknowledgement here
        # proves a replica follows, and sending parks by itself while fewer than that follow.
        replicas = int(r.info("replication").get("connected_slaves", 0))
        needed = max(1, min(settings.redis_min_replicas, replicas))
        if replicas > 0 and int(r.wait(needed, 1000)) >= needed:
            return
    except redis.exceptions.ResponseError:
        pass
    raise ConfigurationError(
        "Redis (REDIS_URL) does not persist its data: neither appendonly is on nor does a replica acknowledge "
        "writes, so a restart would lose campaigns; turn on appendonly (appendfsync everysec) or set "
        "DISPATCHER_ALLOW_VOLATILE_REDIS=1 to accept that.")


def sentinel_managed(client: redis.Redis) -> bool:
    """True when ``client`` finds its master through Sentinel (and follows it through failovers)."""
    return isinstance(client.connection_pool, redis.sentinel.SentinelConnectionPool)


class Epoch:
    """The data set's epoch as this process last saw it (see the module docstring)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis: Any = client
        self.keys = keys
        self.seen: str | None = None

    def check(self, noticed_by: str = "") -> bool:
        """Create the epoch if missing; True when Redis lost its data since this process last looked."""
        current = self.redis.get(self.keys.epoch())
        if current is None:
            self.redis.set(self.keys.epoch(), secrets.token_hex(8), nx=True)
            current = self.redis.get(self.keys.epoch())
        value = current.decode()
        lost = self.seen is not None and value != self.seen
        if lost:
            self._record_loss(noticed_by)
        self.seen = value
        return lost

    def _record_loss(self, noticed_by: str) -> None:
        record = orjson.dumps({"at": time.time(), "noticed_by": noticed_by})
        pipe = self.redis.pipeline()
        pipe.lpush(self.keys.losses(), record)
        pipe.ltrim(self.keys.losses(), 0, _LOSSES_KEPT - 1)
        pipe.execute()

    def losses(self) -> list[dict[str, Any]]:
        """Recorded losses, newest first: ``{"at": Unix s, "noticed_by": str}``."""
        return [orjson.loads(x) for x in self.redis.lrange(self.keys.losses(), 0, -1)]
