"""What one trigger of a schedule does: decide whether a firing is due, late (missed), a duplicate
or overlapping, with ``now`` passed in, and create its campaign. Each firing re-reads the file,
goes through the same cost bound (or counting pass), guards and loading as ``submit``
(:func:`dispatcher.sending.submission.submit`: bounded memory, sending while the rest loads),
and leaves a record of its outcome. The campaign becomes the schedule's current one as soon as
it exists, so a tick while it loads sees it running (``--overlap``); where the loading runs, and
what it holds, is told in ``tasks.schedules``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from dispatcher.errors import DispatcherError, InputError, PermanentError
from dispatcher.instasent.client import InstasentClient
from dispatcher.preflight.result import PreflightOptions
from dispatcher.schema.names import DEFAULT_ACCOUNT, SENDING, State
from dispatcher.sending import submission
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.chunkstore import Loaded
from dispatcher.sending.enqueuer import Enqueuer
from dispatcher.sending.schedules.definition import ScheduleDef
from dispatcher.sending.schedules.store import Firing, ScheduleStore
from dispatcher.sending.store import CampaignStore
from dispatcher.settings import Settings

#: Why a paused schedule's firing did nothing.
PAUSED = "the schedule is paused"


@dataclass
class Firer:
    """Everything a firing needs; ``client_factory`` builds an Instasent client per firing."""

    settings: Settings
    schedules: ScheduleStore
    store: CampaignStore
    ops: BatchOps
    enqueuer: Enqueuer
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
        # A run by hand is off the beat: it neither claims a due time nor moves ``last_due``, the
        # anchor of the timed firings. Setting ``last_due`` to the moment of a hand run hid the
        # next cron firing (its due time was then "already fired") and shifted an interval's
        # ladder onto the hand run, so every later firing came that far after its listed time.
        if not manual:
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
        if not manual and state.get("paused") == "1":
            paused = Firing(name, now, due, "skipped", reason=PAUSED)
            last = self.schedules.runs(name, 1)
            # One record for a pause, not one per trigger: a 5 s schedule paused for a day would
            # otherwise push every real firing out of the kept records.
            if last and last[0].outcome == "skipped" and last[0].reason == PAUSED:
                return paused
            return self.schedules.record(paused)
        previous = state.get("last_campaign", "")
        held = self.schedules.held(name)
        hold = bool(held) or (bool(previous) and self._still_sending(previous))
        if hold and definition.overlap == "skip":
            return self.schedules.record(Firing(name, now, due, "skipped", campaign=previous,
                                                reason=f"campaign {previous} of the previous run is still running"))
        created: list[str] = []

        def on_created(campaign_id: str) -> None:
            created.append(campaign_id)
            # The campaign names its schedule, so its status can say why a firing skipped or held it.
            self.store.redis.hset(self.store.keys.campaign(campaign_id), "schedule", name)
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

    def _start(self, campaign_id: str) -> bool:
        """Queue a held campaign's batches; False when it is gone (expired after a cancel)."""
        try:
            reserved = range(self.store.get(campaign_id).enqueued)  # its first window was reserved at submit
        except InputError:
            return False
        self.enqueuer.enqueue(campaign_id, [*reserved, *self.ops.reserve(campaign_id)])
        return True

    def _still_sending(self, campaign_id: str) -> bool:
        try:
            return self.store.get(campaign_id).state in {s.value for s in SENDING} | {State.PAUSED.value}
        except InputError:
            return False

    def _submit(self, definition: ScheduleDef, now: float, hold: bool,
                on_created: Callable[[str], None]) -> tuple[str, Loaded]:
        """Count, guard, create and load the firing's campaign; ``on_created(id)`` runs before loading.

        Raises:
            InputError: the file or its options must be fixed, or it leaves nothing to send.
            BudgetExceeded: over the balance or ``max_cost`` (nothing is created).
            OSError: the file cannot be read.
        """
        stamp = datetime.fromtimestamp(now, ZoneInfo(definition.tz)).strftime("%Y-%m-%d %H:%M")
        # Validated before the client opens, so a bad definition is refused before Instasent is asked.
        options = submission.SubmitOptions(
            PreflightOptions(**{**definition.options, "account": definition.account}),
            name=f"{definition.name} @ {stamp}", window=definition.window,
            days=definition.days, expire_after_s=definition.expire_after_s,
            priority=definition.priority).validated()
        enqueuer = _Holding() if hold else self.enqueuer
        # ``client_factory`` makes the default account's client; another account's is made (its
        # token decrypted) by ``submit`` itself.
        other = options.preflight.account != DEFAULT_ACCOUNT
        with contextlib.nullcontext(None) if other else self.client_factory() as client:
            campaign_id, _, loaded = submission.submit(self.store, self.ops, enqueuer, self.settings, definition.file,
                                                       options, client=client, on_created=on_created)
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
