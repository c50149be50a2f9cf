"""Recurring campaigns: definitions, due times, and what one firing does.

A schedule is a stored ``submit``: a file, the preflight options, optional send window and
expiry, and either a cron expression in a time zone or a fixed interval. celery-redbeat only
*triggers* firings (``tasks.schedules``); deciding whether a firing is due, late (missed), a
duplicate or overlapping happens here, with ``now`` passed in. Each firing re-reads the file,
goes through the same cost bound (or counting pass), guards and loading as ``submit``
(:func:`dispatcher.sending.loading.submit_file`: bounded memory, sending while the rest loads),
and leaves a record of its outcome. The campaign becomes the schedule's current one as soon as
it exists, so a tick while it loads sees it running (``--overlap``); where the loading runs, and
what it holds, is told in ``tasks.schedules``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import redis
from croniter import croniter

from dispatcher.errors import DispatcherError, InputError, PermanentError, UnknownItem
from dispatcher.instasent.client import InstasentClient
from dispatcher.keys import Keys
from dispatcher.preflight.result import PreflightOptions
from dispatcher.schema.names import SENDING, State
from dispatcher.schema.scripts import script
from dispatcher.sending import campaigns, loading
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.store import CampaignStore
from dispatcher.sending.windows import parse_window
from dispatcher.settings import Settings

#: Firing records kept per schedule.
MAX_RUNS = 50
#: Default seconds a firing may be late before it counts as missed.
DEFAULT_GRACE_S = 600.0
#: How often cron schedules are checked by beat (seconds): the due time itself comes from croniter.
CRON_TICK_S = 30.0


@dataclass(frozen=True, slots=True)
class ScheduleDef:
    """A recurring campaign. Exactly one of ``cron`` (with ``tz``) and ``every_s`` is set."""

    name: str
    file: str
    cron: str | None = None
    tz: str = "UTC"
    every_s: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    window: str | None = None
    days: str | None = None
    expire_after_s: float | None = None
    overlap: str = "skip"
    grace_s: float = DEFAULT_GRACE_S

    def validated(self) -> ScheduleDef:
        """Check the definition.

        Raises:
            InputError: naming what is wrong.
        """
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise InputError("a schedule name uses letters, digits, '-' and '_' only.")
        if (self.cron is None) == (self.every_s is None):
            raise InputError("give a schedule either --cron or --every, not both or neither.")
        if self.cron is not None and not croniter.is_valid(self.cron):
            raise InputError(f"--cron {self.cron!r} is not a cron expression like '0 9 * * MON'.")
        if self.every_s is not None and self.every_s < 1:
            raise InputError("--every must be at least 1s.")
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise InputError(f"--tz {self.tz!r} is not a time zone like Europe/Madrid.") from None
        if self.overlap not in ("skip", "queue"):
            raise InputError("--overlap is skip or queue.")
        if self.window:
            parse_window(self.window, self.days)
        PreflightOptions(**self.options).validated()
        return self

    @property
    def trigger_every_s(self) -> float:
        """How often beat should run the firing task for this schedule."""
        return self.every_s if self.every_s is not None else CRON_TICK_S

    def latest_due(self, now: float, last_due: float | None) -> float | None:
        """The most recent due time at or before ``now`` (Unix s), or None if none yet."""
        if self.cron is not None:
            # croniter's get_prev is strictly before its start: nudge so an exact hit counts.
            here = datetime.fromtimestamp(now + 1, ZoneInfo(self.tz))
            return float(croniter(self.cron, here).get_prev(datetime).timestamp())
        assert self.every_s is not None
        if last_due is None:
            return now
        # The ladder is anchored on when the first firing ran, a little after beat sent it, so the
        # next trigger can arrive a hair "early": allow a quarter interval (at most a second).
        tolerance = min(1.0, self.every_s / 4)
        steps = math.floor((now - last_due + tolerance) / self.every_s)
        return last_due + steps * self.every_s if steps >= 1 else None

    def missed_between(self, last_due: float | None, due: float, cap: int = 10_000) -> int:
        """How many due times fell strictly between ``last_due`` and ``due`` (beat was down).

        ``last_due`` may also be when the schedule was saved: nothing before that counts."""
        if last_due is None:
            return 0
        if self.every_s is not None:
            return max(0, round((due - last_due) / self.every_s) - 1)
        assert self.cron is not None
        it = croniter(self.cron, datetime.fromtimestamp(last_due + 1, ZoneInfo(self.tz)))
        count = 0
        while count < cap and it.get_next(datetime).timestamp() < due:
            count += 1
        return count

    def next_due(self, now: float, last_due: float | None, since: float | None = None) -> float:
        """The next due time after ``now`` (Unix s).

        An ``every_s`` schedule that never fired is first due one interval after it was saved
        (``since``), when beat first triggers it.
        """
        if self.cron is not None:
            here = datetime.fromtimestamp(now, ZoneInfo(self.tz))
            return float(croniter(self.cron, here).get_next(datetime).timestamp())
        assert self.every_s is not None
        anchor = last_due if last_due is not None else since
        if anchor is None:
            return now
        return anchor + (math.floor((now - anchor) / self.every_s) + 1) * self.every_s


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
            raise UnknownItem(f"no schedule named {name!r}; `dispatcher schedule list` shows them.")
        return ScheduleDef(**orjson.loads(raw))

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

    def record(self, firing: Firing) -> Firing:
        pipe = self.redis.pipeline()
        pipe.lpush(self.keys.schedule_runs(firing.schedule), orjson.dumps(firing.to_json()))
        pipe.ltrim(self.keys.schedule_runs(firing.schedule), 0, MAX_RUNS - 1)
        pipe.execute()
        return firing

    def runs(self, name: str, limit: int = MAX_RUNS) -> list[Firing]:
        return [Firing(**orjson.loads(r)) for r in self.redis.lrange(self.keys.schedule_runs(name), 0, limit - 1)]

    def hold(self, name: str, cid: str) -> None:
        """Put a campaign created by an ``--overlap queue`` firing at the end of the schedule's line."""
        self.redis.rpush(self.keys.schedule_held(name), cid)

    def held(self, name: str) -> list[str]:
        """The campaigns waiting their turn, oldest first."""
        legacy = self.redis.hget(self.keys.schedule(name), "queued_campaign")
        waiting = [c.decode() for c in self.redis.lrange(self.keys.schedule_held(name), 0, -1)]
        return ([legacy.decode()] if legacy else []) + waiting

    def take_held(self, name: str, last: str) -> str | None:
        """Make the oldest held campaign the schedule's current one, if the current one is still
        ``last`` (so two callers never start two); returns its id, or None."""
        cid = self._take(keys=[self.keys.schedule(name), self.keys.schedule_held(name)], args=[last])
        return cid.decode() if cid else None

    def claim_due(self, name: str, due: float) -> bool:
        """True once per (schedule, due time): a redelivered or doubled trigger gets False."""
        return bool(self.redis.set(self.keys.schedule_fired(name, int(due)), 1, nx=True, ex=7 * 86400))


@dataclass
class Firer:
    """Everything a firing needs; ``client_factory`` builds an Instasent client per firing."""

    settings: Settings
    schedules: ScheduleStore
    store: CampaignStore
    ops: BatchOps
    enqueuer: campaigns.Enqueuer
    client_factory: Callable[[], InstasentClient]

    def fire(self, name: str, now: float | None = None, manual: bool = False) -> Firing | None:
        """Run one trigger of schedule ``name``; None when nothing was due (a cron tick)."""
        now = time.time() if now is None else now
        definition = self.schedules.get(name)
        state = self.schedules.state(name)
        last_due = float(state["last_due"]) if state.get("last_due") else None
        since = float(state["since"]) if state.get("since") else None
        if manual:
            due = now
        else:
            latest = definition.latest_due(now, last_due)
            if latest is None or (last_due is not None and latest <= last_due):
                return None
            if since is not None and latest < since:
                return None  # due before the schedule (or this edit of it) existed: never "missed"
            due = latest
        if not self.schedules.claim_due(name, due):
            return None
        self.schedules.set_state(name, last_due=due)
        # A cron schedule's misses count from when it was saved; an interval's first due is its first trigger.
        starts = [t for t in (last_due, since if definition.cron is not None else None) if t is not None]
        skipped = 0 if manual else definition.missed_between(max(starts) if starts else None, due)
        if skipped:
            self.schedules.record(Firing(name, now, last_due, "missed",
                                         reason=f"{skipped} firing(s) missed while beat was not running"))
        if not manual and now - due > definition.grace_s:
            return self.schedules.record(Firing(name, now, due, "missed",
                                                reason=f"{now - due:.0f} s late (grace {definition.grace_s:.0f} s)"))
        previous = state.get("last_campaign", "")
        held = self.schedules.held(name)
        hold = bool(held) or (bool(previous) and self._still_sending(previous))
        if hold and definition.overlap == "skip":
            return self.schedules.record(Firing(name, now, due, "skipped", campaign=previous,
                                                reason=f"campaign {previous} of the previous run is still running"))
        created: list[str] = []

        def on_created(campaign_id: str) -> None:
            created.append(campaign_id)
            if not hold:  # a tick while it loads sees it running
                self.schedules.set_state(name, last_campaign=campaign_id)

        try:
            campaign_id, loaded = self._submit(definition, now, hold, on_created)
        except (DispatcherError, OSError) as exc:
            return self.schedules.record(_failed(definition, now, due, exc, created))
        stopped = {"complete": "", "stopped": f"loading stopped: campaign {campaign_id} is {loaded.state}"}.get(
            loaded.outcome, f"another process took over loading campaign {campaign_id}")
        if hold:
            self.schedules.hold(name, campaign_id)
            waiting = f"queued behind campaign {(held or [previous])[-1]}"
            return self.schedules.record(Firing(name, now, due, "waiting", campaign=campaign_id,
                                                reason="; ".join(filter(None, [waiting, stopped]))))
        return self.schedules.record(Firing(name, now, due, "created", campaign=campaign_id, reason=stopped))

    def start_queued(self) -> list[str]:
        """Start campaigns held behind a previous run that has now finished, one at a time and in
        the order they were created; returns their ids."""
        started = []
        for name in self.schedules.names():
            while True:
                previous = self.schedules.state(name).get("last_campaign", "")
                if previous and self._still_sending(previous):
                    break
                queued = self.schedules.take_held(name, previous)
                if queued is None:
                    break
                if self._start(queued):
                    started.append(queued)
                if self._still_sending(queued):
                    break  # the next one waits for this one
        return started

    def _start(self, cid: str) -> bool:
        """Queue a held campaign's batches; False when it is gone (expired after a cancel)."""
        try:
            reserved = range(self.store.get(cid).enqueued)  # its first window was reserved at submit
        except InputError:
            return False
        self.enqueuer.enqueue(cid, [*reserved, *self.ops.reserve(cid)])
        return True

    def _still_sending(self, cid: str) -> bool:
        try:
            return self.store.get(cid).state in {s.value for s in SENDING} | {State.PAUSED.value}
        except InputError:
            return False

    def _submit(self, definition: ScheduleDef, now: float, hold: bool,
                on_created: Callable[[str], None]) -> tuple[str, loading.Loaded]:
        """Count, guard, create and load the firing's campaign; ``on_created(id)`` runs before loading.

        Raises:
            InputError: the file or its options must be fixed, or it leaves nothing to send.
            BudgetExceeded: over the balance or ``max_cost`` (nothing is created).
            OSError: the file cannot be read.
        """
        options = PreflightOptions(**definition.options).validated()
        stamp = datetime.fromtimestamp(now, ZoneInfo(definition.tz)).strftime("%Y-%m-%d %H:%M")
        window = parse_window(definition.window, definition.days) if definition.window else None
        enqueuer = _Holding() if hold else self.enqueuer
        with self.client_factory() as client:
            campaign_id, _, loaded = loading.submit_file(
                self.store, self.ops, enqueuer, self.settings, path=definition.file, options=options, client=client,
                name=f"{definition.name} @ {stamp}", send_window=window, expire_after_s=definition.expire_after_s,
                on_created=on_created)
        return campaign_id, loaded


def _failed(definition: ScheduleDef, now: float, due: float, exc: Exception, created: list[str]) -> Firing:
    """The record of a firing that raised ``exc``: ``refused`` when nothing was created (a list or
    budget to fix, a file gone), ``error`` otherwise, naming the campaign when loading had begun."""
    # An OSError: the file went missing or unreadable since the schedule was added.
    reason = f"cannot read {definition.file}: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
    if created:
        campaign_id = created[0]
        return Firing(definition.name, now, due, "error", campaign=campaign_id,
                      reason=f"loading campaign {campaign_id} stopped: {reason} (`dispatcher resume {campaign_id}` "
                             f"continues it, `dispatcher cancel {campaign_id}` drops it)")
    refused = isinstance(exc, PermanentError | OSError)
    return Firing(definition.name, now, due, "refused" if refused else "error", reason=reason)


class _Holding:
    """An enqueuer that queues nothing: the campaign waits for ``Firer.start_queued``."""

    def enqueue(self, campaign_id: str, numbers: Any) -> None:
        return None
