"""Schedule definitions, firing state and firing records in Redis (keys from
:class:`dispatcher.keys.Keys`, hash fields in :data:`dispatcher.schema.names.SCHEDULE_FIELDS`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import redis

from dispatcher.errors import UnknownItem
from dispatcher.keys import Keys
from dispatcher.schema.scripts import script
from dispatcher.sending.schedules.definition import ScheduleDef

#: Firing records kept per schedule.
MAX_RUNS = 50


@dataclass(frozen=True, slots=True)
class Firing:
    """What one firing did: ``outcome`` is created, skipped, missed, refused, error or waiting."""

    schedule: str
    at: float
    due: float | None
    outcome: str
    campaign: str = ""
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ScheduleStore:
    """Schedule definitions and firing records in Redis."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis: Any = client
        self.keys = keys
        self._take = client.register_script(script("take_held"))

    def save(self, definition: ScheduleDef, now: float | None = None) -> None:
        """Create or replace a schedule definition (its firing state is kept).

        ``now`` (Unix s, default the clock) is recorded as ``since``: a due time before the
        definition existed is never fired nor counted as missed, so an edit does not look late.
        """
        since = time.time() if now is None else now
        pipe = self.redis.pipeline()
        pipe.hset(self.keys.schedule(definition.name), mapping={"def": orjson.dumps(asdict(definition)),
                                                                 "since": repr(since)})
        pipe.sadd(self.keys.schedules(), definition.name)
        pipe.execute()

    def get(self, name: str) -> ScheduleDef:
        """Read one schedule.

        Raises:
            UnknownItem: when there is no such schedule.
        """
        raw = self.redis.hget(self.keys.schedule(name), "def")
        if raw is None:
            raise self.missing(name)
        return ScheduleDef(**orjson.loads(raw))

    @staticmethod
    def missing(name: str) -> UnknownItem:
        """The error :meth:`get` raises for a name no schedule has (also what a token outside a
        schedule's account is told, word for word)."""
        return UnknownItem(f"no schedule named {name!r}; `dispatcher schedule list` shows them.")

    def names(self) -> list[str]:
        return sorted(n.decode() for n in self.redis.smembers(self.keys.schedules()))

    def remove(self, name: str) -> None:
        """Delete a schedule and its records.

        Raises:
            UnknownItem: when there is no such schedule.
        """
        self.get(name)
        pipe = self.redis.pipeline()
        pipe.delete(self.keys.schedule(name), self.keys.schedule_runs(name), self.keys.schedule_held(name))
        pipe.srem(self.keys.schedules(), name)
        pipe.execute()

    def state(self, name: str) -> dict[str, str]:
        raw = self.redis.hgetall(self.keys.schedule(name))
        return {k.decode(): v.decode() for k, v in raw.items() if k != b"def"}

    def set_state(self, name: str, **values: Any) -> None:
        self.redis.hset(self.keys.schedule(name), mapping={k: str(v) for k, v in values.items()})

    def set_paused(self, name: str, paused: bool, now: float | None = None) -> None:
        """Pause a schedule (its timed firings are recorded as skipped) or resume it.

        Raises:
            UnknownItem: when there is no such schedule.
        """
        self.get(name)
        if paused:
            self.set_state(name, paused=1, paused_at=repr(time.time() if now is None else now))
        else:
            self.redis.hdel(self.keys.schedule(name), "paused", "paused_at")

    def record(self, firing: Firing) -> Firing:
        pipe = self.redis.pipeline()
        pipe.lpush(self.keys.schedule_runs(firing.schedule), orjson.dumps(firing.to_json()))
        pipe.ltrim(self.keys.schedule_runs(firing.schedule), 0, MAX_RUNS - 1)
        pipe.execute()
        return firing

    def runs(self, name: str, limit: int = MAX_RUNS) -> list[Firing]:
        return [Firing(**orjson.loads(r)) for r in self.redis.lrange(self.keys.schedule_runs(name), 0, limit - 1)]

    def hold(self, name: str, campaign_id: str) -> None:
        """Put a campaign created by an ``--overlap queue`` firing at the end of the schedule's line."""
        self.redis.rpush(self.keys.schedule_held(name), campaign_id)

    def held(self, name: str) -> list[str]:
        """The campaigns waiting their turn, oldest first."""
        legacy = self.redis.hget(self.keys.schedule(name), "queued_campaign")
        waiting = [c.decode() for c in self.redis.lrange(self.keys.schedule_held(name), 0, -1)]
        return ([legacy.decode()] if legacy else []) + waiting

    def take_held(self, name: str, last: str) -> str | None:
        """Make the oldest held campaign the schedule's current one, if the current one is still
        ``last`` (so two callers never start two); returns its id, or None."""
        campaign_id = self._take(keys=[self.keys.schedule(name), self.keys.schedule_held(name)], args=[last])
        return campaign_id.decode() if campaign_id else None

    def claim_due(self, name: str, due: float) -> bool:
        """True once per (schedule, due time): a redelivered or doubled trigger gets False."""
        return bool(self.redis.set(self.keys.schedule_fired(name, int(due)), 1, nx=True, ex=7 * 86400))
