"""Is this install able to send? The checks behind ``dispatcher health`` and the HTTP ``GET /readyz``
of the webhook and the console: Redis reachable and writable, the replicas the POSTs wait for
(``DISPATCHER_REDIS_MIN_REPLICAS``) connected, and workers' heartbeats.

Each check is one :class:`Check`; :func:`check_health` runs them all and never raises: a Redis
that cannot be asked is a failed check, with a sentence saying why (no password, no host name in
it: a load balancer's probe reads it without a token). :class:`ReadinessProbe` runs the same
checks for an HTTP server, within a deadline, one run at a time however many probes ask.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import redis

from dispatcher.errors import InputError, error_body
from dispatcher.keys import Keys
from dispatcher.sending.durability import sentinel_managed
from dispatcher.sending.health import WorkerRegistry
from dispatcher.settings import Settings

log = logging.getLogger(__name__)

#: Milliseconds the write probe lives.
PROBE_TTL_MS = 10_000
#: Seconds a readiness probe's Redis client waits to connect, and for any one reply: a load
#: balancer must hear "not ready" within seconds, not after the 30 s a worker waits.
PROBE_CONNECT_TIMEOUT_S = 1.0
PROBE_REPLY_TIMEOUT_S = 1.5
#: Seconds one readiness answer may take in all; past it the probe answers "not ready".
PROBE_DEADLINE_S = 3.0
#: Seconds a readiness answer is reused: probes that need no token may come as fast as anyone likes.
PROBE_FRESH_S = 1.0


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

    def failing(self) -> str:
        """One sentence naming every failed check and why, or ``""`` when all passed."""
        failed = [f"{c.name} ({c.detail})" for c in self.checks if not c.ok]
        return f"not ready: {'; '.join(failed)}." if failed else ""

    def http_answer(self) -> tuple[int, dict[str, Any]]:
        """The status and JSON body of ``GET /readyz``: 200 and :meth:`to_json` when ready, else 503
        with the failed checks named in ``error`` (and ``message``, the servers' error shape)."""
        if self.ready:
            return 200, self.to_json()
        return 503, {**self.to_json(), **error_body(self.failing())}


def connected_replicas(client: redis.Redis) -> int:
    """Replicas connected to the master ``client`` talks to (``INFO replication``).

    Raises:
        redis.exceptions.RedisError: when Redis cannot be asked.
    """
    r: Any = client
    return int(r.info("replication").get("connected_slaves", 0))


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
        # READONLY (a replica), OOM, or min-replicas-to-write unmet: redis-py drops the error code,
        # so the type names it (ReadOnlyError) beside Redis' sentence. Any other error is named by
        # its type only: a connection error's text carries the host and port.
        reason = type(exc).__name__
        if isinstance(exc, redis.exceptions.ResponseError):
            reason += f": {str(exc).splitlines()[0][:120]}" if str(exc) else ""
        checks.append(Check("writable", False, f"Redis refuses writes ({reason})"))
    try:
        replicas = connected_replicas(client)
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


def workers_required(value: str | None) -> bool:
    """The ``workers`` query parameter of ``GET /readyz``: absent or ``1`` requires a live worker,
    ``0`` does not (a receiver that should take delivery reports while the workers are down).

    Raises:
        InputError: for any other value.
    """
    if value is None or value == "1":
        return True
    if value == "0":
        return False
    raise InputError("workers must be 0 (do not require a live worker) or 1 (require one, the default).")


def _timed_out(deadline_s: float) -> Health:
    return Health((Check("redis", False, f"Redis did not answer the checks within {deadline_s:g} s"),))


class ReadinessProbe:
    """:func:`check_health` for an HTTP readiness route: run in a thread, answered within
    ``deadline_s`` seconds, one run at a time (per ``workers`` flag) however many probes ask, and
    an answer reused for ``fresh_s`` seconds.

    A probe that asks while a run is under way waits for that run instead of starting another,
    so a load balancer polling a stuck Redis ties up one thread, not one per request; and since
    the route needs no token, reusing a fresh answer keeps anyone who polls it from making Redis
    work more than once per ``fresh_s``. Give it a client with short timeouts
    (:data:`PROBE_CONNECT_TIMEOUT_S`, :data:`PROBE_REPLY_TIMEOUT_S`) so that a run past the deadline
    ends soon after it too.
    """

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings,
                 deadline_s: float = PROBE_DEADLINE_S, fresh_s: float = PROBE_FRESH_S) -> None:
        self.client = client
        self.keys = keys
        self.settings = settings
        self.deadline_s = deadline_s
        self.fresh_s = fresh_s
        self._running: dict[bool, asyncio.Future[Health]] = {}
        #: The last finished run per ``workers`` flag: when it finished (monotonic s) and its result.
        self._last: dict[bool, tuple[float, Health]] = {}

    def _start(self, workers: bool) -> asyncio.Future[Health]:
        loop = asyncio.get_running_loop()
        running = self._running.get(workers)
        # A run started on another event loop (a server restarted in the same process) cannot be awaited here.
        if running is not None and not running.done() and running.get_loop() is loop:
            return running
        running = loop.run_in_executor(None, check_health, self.client, self.keys, self.settings, workers)
        self._running[workers] = running

        def finished(done: asyncio.Future[Health]) -> None:
            if self._running.get(workers) is done:
                del self._running[workers]
            if done.cancelled():
                return
            if done.exception() is not None:  # read here, or asyncio logs it at exit
                log.error("the readiness checks failed: %s", type(done.exception()).__name__)
                return
            self._last[workers] = (time.monotonic(), done.result())

        running.add_done_callback(finished)
        return running

    async def check(self, workers: bool = True) -> Health:
        """The checks' result, or a failed ``redis`` check when they take over ``deadline_s`` seconds
        (they go on in their thread and end by their client's timeouts). Never raises."""
        last = self._last.get(workers)
        if last is not None and time.monotonic() - last[0] < self.fresh_s:
            return last[1]
        try:
            return await asyncio.wait_for(asyncio.shield(self._start(workers)), self.deadline_s)
        except TimeoutError:
            return _timed_out(self.deadline_s)
        except Exception as exc:  # a bug in a check must read as "not ready", never as a 500
            return Health((Check("redis", False, f"the checks failed ({type(exc).__name__})"),))
