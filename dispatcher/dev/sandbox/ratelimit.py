"""Instasent-style rate limits: a fixed window per endpoint and wall-clock minute.

Window ``n`` covers Unix seconds ``[60 n, 60 (n + 1))``. Each endpoint (``"POST /sms/bulk"``) may
take ``limit`` requests per window; the next window starts from zero. A limit of 0 means no limit,
yet the headers are still sent, with :data:`UNLIMITED` as the limit.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Window length in seconds.
WINDOW_S = 60
#: ``X-RateLimit-Limit`` sent when the limit is off: large enough that no client ever waits.
UNLIMITED = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Verdict:
    """Outcome of one request against its endpoint's window; ``reset`` is Unix seconds."""

    allowed: bool
    limit: int
    remaining: int
    reset: int

    def headers(self) -> dict[str, str]:
        """The ``X-RateLimit-*`` headers for the response."""
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }


class FixedWindowLimiter:
    """Per-endpoint request counters for the current wall-clock minute."""

    def __init__(self, limit_per_min: int) -> None:
        self.limit_per_min = max(0, limit_per_min)
        self._windows: dict[str, tuple[int, int]] = {}

    def clear(self, limit_per_min: int | None = None) -> None:
        """Forget every window, optionally with a new limit."""
        if limit_per_min is not None:
            self.limit_per_min = max(0, limit_per_min)
        self._windows.clear()

    def hit(self, endpoint: str, now: float) -> Verdict:
        """Count one request to ``endpoint`` at Unix time ``now`` unless its window is full."""
        return self._check(endpoint, now, consume=True)

    def peek(self, endpoint: str, now: float) -> Verdict:
        """The window's state at ``now`` without counting a request (for refused tokens)."""
        return self._check(endpoint, now, consume=False)

    def _check(self, endpoint: str, now: float, consume: bool) -> Verdict:
        window = int(now // WINDOW_S)
        seen_window, count = self._windows.get(endpoint, (window, 0))
        if seen_window != window:
            count = 0
        limit = self.limit_per_min or UNLIMITED
        allowed = count < limit
        if allowed and consume:
            count += 1
        self._windows[endpoint] = (window, count)
        return Verdict(allowed, limit, max(0, limit - count), (window + 1) * WINDOW_S)
