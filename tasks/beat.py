"""Beat's scheduler: celery-redbeat's, kept alive through a Redis failover or restart (issue 23).

redbeat extends its lock at every tick, and a tick that cannot reach Redis raises out of Celery's
beat loop, which ends the process: every beat died with the master it was talking to. This
scheduler (``celery beat -S tasks.beat.Scheduler``, what ``dispatcher beat`` runs) turns a Redis
that cannot be reached into "try again in :data:`RETRY_S` seconds": the next tick asks Sentinel
for the master again (redis-py's Sentinel pool does, on each new connection). The same holds at
start-up: Celery builds the scheduler after logging "beat: Starting", and redbeat then writes its
static entries to Redis; a beat starting during a switch waited for nothing and died there. It
now tries again every :data:`RETRY_S` seconds for up to :data:`START_WAIT_S`.

The lock lives in the data set, so it moves with a failover, TTL included. A beat that finds on
its return that the lock is no longer its own (it expired during a long outage and another beat
took it, or the write that renewed it was lost with the old master) stops firing and waits to
take it again, as at start-up; so does a beat that could not take it at start-up because Redis
was away (redbeat's start-up hook squashes that error and leaves no lock). Either way, two beats
never fire at once for longer than a tick, and a due time fires once whatever the beats do:
``dispatcher.sending.schedules.firing`` claims each due time in Redis.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, RedBeatScheduler, get_redis

log = logging.getLogger(__name__)

#: Seconds before a tick that could not reach Redis is tried again.
RETRY_S = 1.0
#: Seconds a starting beat waits for Redis before it gives up (a failover takes seconds; a Redis
#: that is simply not there should end the process, for its supervisor to see).
START_WAIT_S = 60.0
#: What a Redis that cannot be reached (yet) raises; Sentinel's MasterNotFoundError is a ConnectionError.
UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class Scheduler(RedBeatScheduler):
    """:class:`redbeat.RedBeatScheduler` that outlives a Redis failover (see the module docstring)."""

    #: redbeat's lock (a redis-py ``Lock``); None while this beat holds none.
    lock: Any

    def setup_schedule(self) -> None:
        """redbeat's start-up (store the static entries in Redis), tried again while Redis cannot be
        reached, for up to :data:`START_WAIT_S` seconds (it is idempotent).

        Raises:
            redis.exceptions.ConnectionError: when Redis stays unreachable that long.
            redis.exceptions.TimeoutError: likewise.
        """
        deadline = time.monotonic() + START_WAIT_S
        while True:
            try:
                super().setup_schedule()
                return
            except UNREACHABLE as exc:
                if time.monotonic() >= deadline:
                    raise
                log.warning("beat: Redis cannot be reached at start-up (%s); trying again in %g s",
                            type(exc).__name__, RETRY_S)
                time.sleep(RETRY_S)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """One beat tick: take the lock if this beat holds none, then redbeat's tick (extend the lock,
        send what is due); seconds until the next tick.

        Never raises for a Redis that cannot be reached or a lock lost: it waits and tries again.
        """
        try:
            if self.lock_key and self.lock is None:
                self._take_lock()
            return float(super().tick(*args, **kwargs))
        except UNREACHABLE as exc:
            log.warning("beat: Redis cannot be reached (%s); trying again in %g s", type(exc).__name__, RETRY_S)
            return RETRY_S
        except redis.exceptions.LockNotOwnedError:
            log.warning("beat: redbeat's lock is no longer this beat's; waiting to take it again")
            self.lock = None
            return RETRY_S

    def _take_lock(self) -> None:
        # As redbeat's start-up hook does: block until the lock is free, polling every max_interval.
        client = get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)  # extend *to* the timeout, as redbeat does
        log.info("beat: waiting for redbeat's lock")
        lock.acquire()
        log.info("beat: acquired redbeat's lock")
        self.lock = lock
