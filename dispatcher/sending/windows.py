"""Send windows in each recipient's local time (quiet hours), and campaign expiry durations.

A window is a daily time range (``09:00-21:00``) on some weekdays (``mon-fri``). A number may
span several time zones (phonenumbers' metadata); it is inside the window only when it is inside
in all of them. Every function takes ``now`` explicitly, so tests need no real clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as pn_timezone

from dispatcher.errors import InputError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: How far ahead :func:`next_open` looks for an opening.
HORIZON = timedelta(days=8)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class Window:
    """Daily local-time range ``[start, end)`` on ``days`` (0 = Monday). ``end`` < ``start`` wraps midnight."""

    start: time
    end: time
    days: frozenset[int] = frozenset(range(7))

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start.strftime("%H:%M"), "end": self.end.strftime("%H:%M"), "days": sorted(self.days)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Window:
        return cls(time.fromisoformat(data["start"]), time.fromisoformat(data["end"]), frozenset(data["days"]))

    def contains_local(self, local: datetime) -> bool:
        """True when the local wall-clock time ``local`` is inside the window."""
        t = local.time().replace(tzinfo=None)
        if self.start <= self.end:
            return local.weekday() in self.days and self.start <= t < self.end
        # Wraps midnight: the part after midnight belongs to the previous day's window.
        if t >= self.start:
            return local.weekday() in self.days
        return t < self.end and (local.weekday() - 1) % 7 in self.days


def parse_window(spec: str, days: str | None = None) -> Window:
    """Parse ``--window 09:00-21:00`` and ``--days mon-fri`` (or ``mon,wed,fri``).

    Raises:
        InputError: when either is malformed.
    """
    match = re.fullmatch(r"\s*(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*", spec)
    if not match:
        raise InputError(f"--window must look like 09:00-21:00, got {spec!r}.")
    try:
        start, end = (time.fromisoformat(part.zfill(5)) for part in match.groups())
    except ValueError:
        raise InputError(f"--window has an impossible time: {spec!r}.") from None
    if start == end:
        raise InputError("--window must not start and end at the same time.")
    return Window(start, end, parse_days(days) if days else frozenset(range(7)))


def parse_days(spec: str) -> frozenset[int]:
    """Parse ``mon-fri``, ``sat,sun`` or ``mon-wed,fri`` into weekday numbers (0 = Monday).

    Raises:
        InputError: for an unknown day name.
    """
    result: set[int] = set()
    for part in spec.lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise InputError(f"--days takes day names like mon-fri or sat,sun, got {spec!r}.")
        a, b = DAYS.index(first), DAYS.index(last or first)
        result.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(result)


def parse_duration(spec: str) -> float:
    """Seconds in ``30m``, ``6h``, ``2d``, ``90s``.

    Raises:
        InputError: when malformed or not positive.
    """
    match = _DURATION.match(spec)
    if not match or float(match.group(1)) <= 0:
        raise InputError(f"a duration looks like 90s, 30m, 6h or 2d; got {spec!r}.")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


@lru_cache(maxsize=200_000)
def zones_for(e164: str) -> tuple[str, ...]:
    """The IANA time zones of a number, sorted (phonenumbers falls back to the country's zones);
    ``("UTC",)`` when the metadata knows none."""
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return ("UTC",)
    zones = {z for z in pn_timezone.time_zones_for_number(number) if z != "Etc/Unknown"}
    return tuple(sorted(zones)) or ("UTC",)


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError:
        return ZoneInfo("UTC")


def is_open(window: Window, zones: tuple[str, ...], now: datetime) -> bool:
    """True when ``now`` (aware) is inside ``window`` in every zone of ``zones``."""
    return all(window.contains_local(now.astimezone(_zone(z))) for z in zones)


def next_open(window: Window, zones: tuple[str, ...], now: datetime) -> datetime | None:
    """The first instant at or after ``now`` inside the window in all ``zones``; None within 8 days.

    An intersection of windows opens when the last of them opens, so the candidates are ``now``
    and every zone's window starts in the horizon.
    """
    if is_open(window, zones, now):
        return now
    candidates = []
    for name in zones:
        tz = _zone(name)
        local_day = now.astimezone(tz).date()
        for offset in range(HORIZON.days + 1):
            day = local_day + timedelta(days=offset)
            start = datetime.combine(day, window.start, tz).astimezone(UTC)
            if start >= now:
                candidates.append(start)
    for candidate in sorted(candidates):
        if is_open(window, zones, candidate):
            return candidate
    return None
