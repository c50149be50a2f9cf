"""Is this install able to send? The checks behind ``dispatcher health`` (and, later, the HTTP
``/healthz`` and ``/readyz`` of the webhook and the console): Redis reachable and writable, the
replicas the POSTs wait for (``DISPATCHER_REDIS_MIN_REPLICAS``) connected, and workers' heartbeats.

Each check is one :class:`Check`; :func:`check_health` runs them all and never raises: a Redis
that cannot be asked is a failed check, with a sentence saying why (no password in it).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import redis

from dispatcher.keys import Keys
from dispatcher.sending.durability import sentinel_managed
from dispatcher.sending.health import WorkerRegistry
from dispatcher.settings import Settings

#: Milliseconds the write probe lives.
PROBE_TTL_MS = 10_000


@dataclass(frozen=True, slots=True)
class Check:
    """One check: its name, whether it passed, and a sentence for a person."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Health:
    """Every check, in order. ``live`` is what a liveness probe needs (Redis answers); ``ready``
    is what a readiness probe needs (every check passed)."""

    checks: tuple[Check, ...]

    @property
    def live(self) -> bool:
        return all(c.ok for c in self.checks if c.name == "redis")

    @property
    def ready(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        """``{"live": bool, "ready": bool, "checks": {name: {"ok": bool, "detail": str}}}``."""
        return {"live": self.live, "ready": self.ready,
                "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in self.checks}}


def check_health(client: redis.Redis, keys: Keys, settings: Settings, workers: bool = True) -> Health:
    """Run the checks against ``client`` (``workers``: also require a live worker heartbeat)."""
    r: Any = client
    checks: list[Check] = []
    try:
        r.ping()
    except redis.exceptions.RedisError as exc:
        return Health((Check("redis", False, f"Redis does not answer ({type(exc).__name__})"),))
    where = "through Sentinel" if sentinel_managed(client) else "directly"
    checks.append(Check("redis", True, f"Redis answers ({where})"))
    try:
        r.set(keys.health_probe(), secrets.token_hex(4), px=PROBE_TTL_MS)
        checks.append(Check("writable", True, "Redis takes writes"))
    except redis.exceptions.RedisError as exc:
        # READONLY (a replica), OOM, or min-replicas-to-write unmet: each names itself.
        checks.append(Check("writable", False, f"Redis refuses writes: {str(exc).split(chr(10))[0][:120]}"))
    try:
        info = r.info("replication")
        replicas = int(info.get("connected_slaves", 0))
        needed = settings.redis_min_replicas
        ok = replicas >= needed
        detail = (f"{replicas} replica(s) connected, {needed} needed before each POST (DISPATCHER_REDIS_MIN_REPLICAS)"
                  if needed else f"{replicas} replica(s) connected; POSTs do not wait for any")
        checks.append(Check("replicas", ok, detail))
    except redis.exceptions.RedisError as exc:
        checks.append(Check("replicas", False, f"cannot read Redis' replication ({type(exc).__name__})"))
    if workers:
        try:
            alive = WorkerRegistry(client, keys).alive()
            checks.append(Check("workers", bool(alive), f"{len(alive)} worker(s) alive" if alive
                                else "no worker heartbeat: start `dispatcher worker`"))
        except redis.exceptions.RedisError as exc:
            checks.append(Check("workers", False, f"cannot read the workers' heartbeats ({type(exc).__name__})"))
    return Health(tuple(checks))
