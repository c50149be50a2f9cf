"""Adding, removing and listing schedules: the operations the CLI and the console share.

Firing them is :mod:`dispatcher.sending.schedules.firing`; arming their triggers is celery-redbeat's
side (``tasks.schedules``), passed in as :class:`ScheduleEntries`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from dispatcher.errors import InputError, InvalidTransition, UnknownItem
from dispatcher.preflight.check import check_file
from dispatcher.preflight.result import PreflightOptions
from dispatcher.schema.names import DEFAULT_ACCOUNT, FINAL
from dispatcher.sending.schedules.definition import ScheduleDef
from dispatcher.sending.schedules.store import ScheduleStore
from dispatcher.sending.store import CampaignStore


class ScheduleEntries(Protocol):
    """The trigger side of schedules (celery-redbeat's entries, in ``tasks.schedules``)."""

    def save_entry(self, definition: ScheduleDef) -> None:
        """Create or update the trigger of a schedule."""

    def delete_entry(self, name: str) -> None:
        """Remove the trigger of a schedule (missing is fine)."""


def add_schedule(schedules: ScheduleStore, entries: ScheduleEntries, definition: ScheduleDef,
                 known_accounts: Collection[str] | None = None) -> ScheduleDef:
    """Validate, store and arm a schedule (a new one or a replacement); returns it validated.

    The file is checked now (it can be read, has a phone column and every column the text names);
    each firing checks it again, since it may change. With ``known_accounts``, its account must be
    ``default`` (``INSTASENT_TOKEN`` of whatever process fires it) or one of them (each firing
    resolves it again).

    Raises:
        InputError: when the definition is malformed, its account unknown or its file unusable.
    """
    checked = definition.validated()
    if known_accounts is not None and checked.account not in {*known_accounts, DEFAULT_ACCOUNT}:
        raise InputError(f"no account is named {checked.account[:70]!r}: see dispatcher account list.")
    check_file(checked.file, PreflightOptions(**checked.options))
    schedules.save(checked)
    entries.save_entry(checked)
    return checked


class CurrentCampaign(InputError):
    """A schedule to remove still has a campaign that has not finished: say what to do with it."""

    def __init__(self, message: str, campaign: dict[str, Any]) -> None:
        super().__init__(message)
        self.campaign = campaign


def current_campaign(schedules: ScheduleStore, store: CampaignStore, name: str) -> dict[str, Any] | None:
    """The unfinished campaign schedule ``name`` created last (``id``, ``state``, ``name``), or None;
    ``held`` lists the campaigns queued behind it."""
    ids = [schedules.state(name).get("last_campaign", ""), *schedules.held(name)]
    unfinished = []
    for campaign_id in filter(None, ids):
        try:
            info = store.get(campaign_id)
        except UnknownItem:
            continue
        if info.state not in FINAL:
            unfinished.append({"id": info.id, "state": str(info.state), "name": info.name})
    if not unfinished:
        return None
    return {**unfinished[0], "held": [c["id"] for c in unfinished[1:]]}


def remove_schedule(schedules: ScheduleStore, entries: ScheduleEntries, name: str, *,
                    store: CampaignStore | None = None, current: str | None = "keep",
                    cancel: Callable[[str], object] | None = None) -> dict[str, Any] | None:
    """Delete a schedule and its trigger. Its unfinished campaign (see :func:`current_campaign`,
    looked for with ``store``) is kept with ``current="keep"``, cancelled (with the ones held
    behind it) through ``cancel(id)`` with ``current="cancel"``; with ``current=None`` an unfinished
    campaign refuses the removal. Returns ``{"id", "action": "kept" | "cancelled"}``, or None when
    there was none. Campaigns that finished are always kept.

    Raises:
        UnknownItem: when there is no such schedule.
        CurrentCampaign: with ``current=None`` and an unfinished campaign (nothing removed).
        InputError: for another ``current``.
    """
    if current not in (None, "keep", "cancel"):
        raise InputError(f"current is keep or cancel, got {current!r}.")
    schedules.get(name)
    found = current_campaign(schedules, store, name) if store is not None else None
    if found is not None and current is None:
        raise CurrentCampaign(f"schedule {name} has campaign {found['id']} still {found['state']}: say whether to "
                              "keep it (it sends as planned) or cancel it (`--keep-current` or `--cancel-current`; "
                              "current=keep or current=cancel in the API).", found)
    schedules.remove(name)
    entries.delete_entry(name)
    if found is None:
        return None
    if current == "cancel" and cancel is not None:
        for campaign_id in [found["id"], *found["held"]]:
            with contextlib.suppress(InvalidTransition, UnknownItem):  # it finished meanwhile
                cancel(campaign_id)
        return {"id": found["id"], "action": "cancelled", "held": found["held"]}
    return {"id": found["id"], "action": "kept", "held": found["held"]}


def schedule_rows(schedules: ScheduleStore, now: float | None = None,
                  store: CampaignStore | None = None) -> list[dict[str, Any]]:
    """The ``schedule list --json`` rows: each schedule with its next and last firings (Unix s, and
    ISO 8601 in the schedule's own zone), its text, sender, window and options, whether it is
    paused, its next :data:`NEXT_RUNS` due times, its last firings with their outcome and, with
    ``store``, its unfinished campaign (``current_campaign``)."""
    now = time.time() if now is None else now
    rows: list[dict[str, Any]] = []
    for name in schedules.names():
        try:
            rows.append(schedule_row(schedules, name, now, store))
        except UnknownItem:  # removed while listing
            continue
    return rows


#: Next due times listed per schedule.
NEXT_RUNS = 5


def schedule_row(schedules: ScheduleStore, name: str, now: float | None = None,
                 store: CampaignStore | None = None) -> dict[str, Any]:
    """One row of :func:`schedule_rows`.

    Raises:
        UnknownItem: when there is no such schedule.
    """
    now = time.time() if now is None else now
    definition = schedules.get(name)
    state = schedules.state(name)
    last_due = float(state["last_due"]) if state.get("last_due") else None
    since = float(state["since"]) if state.get("since") else None
    runs = schedules.runs(name, 10)
    paused = state.get("paused") == "1"
    upcoming: list[float] = []
    at = now
    for _ in range(NEXT_RUNS):
        nxt = definition.next_due(at, last_due, since)
        upcoming.append(nxt)
        at = nxt + 0.001
    next_run = upcoming[0]
    last_run = runs[0].at if runs else None
    options = definition.options
    return {"name": name, "file": definition.file, "cron": definition.cron, "tz": definition.tz,
            "every_s": definition.every_s, "text": options.get("text"), "text_column": options.get("text_column"),
            "sender": options.get("sender"), "country": options.get("country"), "hlr": options.get("hlr"),
            "max_cost": options.get("max_cost"), "window": definition.window, "days": definition.days,
            "expire_after_s": definition.expire_after_s, "overlap": definition.overlap, "grace_s": definition.grace_s,
            "priority": definition.priority, "paused": paused,
            "paused_at": float(state["paused_at"]) if paused and state.get("paused_at") else None,
            "next_run": None if paused else next_run,
            "next_run_local": None if paused else _local(next_run, definition.tz),
            "next_runs": [] if paused else [{"at": t, "at_local": _local(t, definition.tz)} for t in upcoming],
            "last_run": last_run, "last_run_local": _local(last_run, definition.tz),
            "last_outcome": runs[0].outcome if runs else None,
            "last_campaign": runs[0].campaign if runs else None,
            "last_reason": runs[0].reason if runs else None,
            "runs": [{**r.to_json(), "at_local": _local(r.at, definition.tz)} for r in runs],
            "current_campaign": current_campaign(schedules, store, name) if store is not None else None}


def _local(ts: float | None, tz: str) -> str | None:
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).isoformat(timespec="seconds") if ts else None
