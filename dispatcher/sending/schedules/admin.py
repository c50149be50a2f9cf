"""Adding, removing and listing schedules: the operations the CLI and the console share.

Firing them is :mod:`dispatcher.sending.schedules.firing`; arming their triggers is celery-redbeat's
side (``tasks.schedules``), passed in as :class:`ScheduleEntries`.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from dispatcher.preflight.check import check_file
from dispatcher.preflight.result import PreflightOptions
from dispatcher.sending.schedules.definition import ScheduleDef
from dispatcher.sending.schedules.store import ScheduleStore


class ScheduleEntries(Protocol):
    """The trigger side of schedules (celery-redbeat's entries, in ``tasks.schedules``)."""

    def save_entry(self, definition: ScheduleDef) -> None:
        """Create or update the trigger of a schedule."""

    def delete_entry(self, name: str) -> None:
        """Remove the trigger of a schedule (missing is fine)."""


def add_schedule(schedules: ScheduleStore, entries: ScheduleEntries, definition: ScheduleDef) -> ScheduleDef:
    """Validate, store and arm a schedule (a new one or a replacement); returns it validated.

    The file is checked now (it can be read, has a phone column and every column the text names);
    each firing checks it again, since it may change.

    Raises:
        InputError: when the definition is malformed or its file unusable.
    """
    checked = definition.validated()
    check_file(checked.file, PreflightOptions(**checked.options))
    schedules.save(checked)
    entries.save_entry(checked)
    return checked


def remove_schedule(schedules: ScheduleStore, entries: ScheduleEntries, name: str) -> None:
    """Delete a schedule and its trigger (the campaigns it created are kept).

    Raises:
        UnknownItem: when there is no such schedule.
    """
    schedules.remove(name)
    entries.delete_entry(name)


def schedule_rows(schedules: ScheduleStore, now: float | None = None) -> list[dict[str, Any]]:
    """The ``schedule list --json`` rows: each schedule with its next and last firings (Unix s, and
    ISO 8601 in the schedule's own zone)."""
    now = time.time() if now is None else now
    rows: list[dict[str, Any]] = []
    for name in schedules.names():
        definition = schedules.get(name)
        state = schedules.state(name)
        last_due = float(state["last_due"]) if state.get("last_due") else None
        since = float(state["since"]) if state.get("since") else None
        runs = schedules.runs(name, 5)
        next_run = definition.next_due(now, last_due, since)
        last_run = runs[0].at if runs else None
        rows.append({"name": name, "file": definition.file, "cron": definition.cron, "tz": definition.tz,
                     "every_s": definition.every_s, "next_run": next_run,
                     "next_run_local": _local(next_run, definition.tz), "last_run": last_run,
                     "last_run_local": _local(last_run, definition.tz),
                     "last_outcome": runs[0].outcome if runs else None,
                     "last_campaign": runs[0].campaign if runs else None,
                     "last_reason": runs[0].reason if runs else None, "runs": [r.to_json() for r in runs]})
    return rows


def _local(ts: float | None, tz: str) -> str | None:
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).isoformat(timespec="seconds") if ts else None
