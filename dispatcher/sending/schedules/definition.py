"""A schedule's definition, its checks, and its due-time arithmetic (cron in a time zone, or a fixed
interval); all times are Unix seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from dispatcher.errors import InputError
from dispatcher.preflight.result import PreflightOptions
from dispatcher.sending.accounts import DEFAULT_ACCOUNT
from dispatcher.sending.windows import parse_window

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
    #: The account its campaigns send for; definitions older than accounts are ``default``'s.
    account: str = DEFAULT_ACCOUNT

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
