"""A delivery report answered 2xx is on the replicas (issue 23).

Replication is asynchronous: a report applied on a master that dies before shipping it is gone
from the promoted replica, while Instasent, answered 2xx, never sends it again. So with
``DISPATCHER_REDIS_MIN_REPLICAS`` set, the receiver answers 2xx only after that many replicas
acknowledged (``WAIT``) the report's writes, and raises :class:`NotReplicated` (answered 503, so
that Instasent retries; applying is idempotent) when fewer did within
``DISPATCHER_REDIS_REPLICA_WAIT``.

``WAIT`` counts the writes of its own connection. The batched apply sends it in the same pipeline
as the script call (:class:`dispatcher.delivery.batched.BatchedScript`); the rare blocking writes
(holds, opt-outs, inbound messages) run on pooled connections, so :func:`barrier` writes a key of
its own and waits on that: the replication stream is ordered, so a replica that has the barrier
has every write that finished before it.
"""

from __future__ import annotations

from typing import Any

import redis

from dispatcher.keys import Keys

#: Milliseconds the barrier key lives (it only has to outlive its own ``WAIT``).
BARRIER_TTL_MS = 60_000


class NotReplicated(redis.exceptions.RedisError):
    """Too few replicas acknowledged a report's writes in time: the report must not be answered 2xx."""

    def __init__(self, acks: int, needed: int) -> None:
        super().__init__(f"only {acks} of the {needed} Redis replicas needed acknowledged the report in time")
        self.acks = acks
        self.needed = needed


def wait_ms(wait_s: float) -> int:
    """``WAIT``'s timeout in milliseconds for ``wait_s`` seconds (at least 1: 0 would block forever)."""
    return max(1, int(wait_s * 1000))


def require(acks: int, needed: int) -> None:
    """Raise :class:`NotReplicated` when ``acks`` is under ``needed``."""
    if acks < needed:
        raise NotReplicated(acks, needed)


def barrier(client: redis.Redis, keys: Keys, replicas: int, wait_s: float) -> None:
    """Return once ``replicas`` replicas have every write this process finished before the call;
    nothing to do when ``replicas`` is 0.

    Raises:
        NotReplicated: when fewer acknowledged within ``wait_s`` seconds.
        redis.exceptions.RedisError: when Redis cannot be reached.
    """
    if replicas <= 0:
        return
    pipe: Any = client.pipeline(transaction=False)
    pipe.set(keys.replication_barrier(), 1, px=BARRIER_TTL_MS)
    pipe.wait(replicas, wait_ms(wait_s))
    _, acks = pipe.execute()
    require(int(acks), replicas)
