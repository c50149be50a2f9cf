"""Checking request times against a per-minute rate limit, for the rate tests."""

from __future__ import annotations

#: When a request was granted: no earlier than the first time, no later than the second.
Grant = tuple[float, float]


def over_the_limit(grants: list[Grant], per_minute: int) -> list[str]:
    """Windows holding more requests than the limit allows them.

    A window of ``w`` seconds may hold ``w * per_minute / 60`` requests (rounded up; for a 60 s window,
    exactly the limit): nothing more, so a run of grants ``i..j`` must span at least
    ``(j - i) * 60 / per_minute`` seconds. The span is measured generously (from the earliest time any
    of them can have been granted to the latest), so a failure is a real excess, never noise.
    """
    ordered = sorted(grants)
    problems = []
    for i in range(len(ordered)):
        earliest, latest = ordered[i][0], ordered[i][1]
        for j in range(i + 1, len(ordered)):
            earliest, latest = min(earliest, ordered[j][0]), max(latest, ordered[j][1])
            if (j - i) * 60 / per_minute > latest - earliest:
                problems.append(f"{j - i + 1} requests within {latest - earliest:.4f} s")
    return problems
