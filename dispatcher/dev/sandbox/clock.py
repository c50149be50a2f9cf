"""Wall-clock helpers: Unix time and ISO 8601 UTC strings as Instasent writes them."""

from __future__ import annotations

import time
from datetime import UTC, datetime

now = time.time

_last_second = -1
_last_text = ""


def iso_utc(t: float) -> str:
    """``2026-04-21T10:15:00Z`` for Unix time ``t`` (seconds, truncated).

    The last answer is cached, so a burst of calls within one second formats once.
    """
    global _last_second, _last_text
    second = int(t)
    if second != _last_second:
        _last_text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        _last_second = second
    return _last_text
