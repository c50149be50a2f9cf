"""Counters the sandbox exposes on ``GET /_sandbox/stats``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(slots=True)
class Stats:
    """Everything counted since the last reset. Message counts are per item, not per request."""

    #: API requests of any outcome (401 and 429 included).
    requests: int = 0
    #: Messages accepted (``POST /sms`` and ``POST /sms/bulk``).
    accepted: int = 0
    #: Items refused by validation (``already used`` included).
    rejected: int = 0
    #: Items whose clientId was already accepted (earlier, or earlier in the same batch).
    duplicate_submissions: int = 0
    #: Messages accepted although their clientId already was (only with uniqueness off).
    duplicate_accepted: int = 0
    #: Requests refused with 429 by the real rate limit.
    rate_limited: int = 0
    #: Requests refused with 401.
    unauthorized: int = 0
    #: Requests refused with 402.
    insufficient_balance: int = 0
    #: Injected faults of every kind, then per kind.
    errors_injected: int = 0
    throttled_injected: int = 0
    errors_before_accept: int = 0
    errors_after_accept: int = 0
    timeouts_injected: int = 0
    #: Delivery reports (and inbound messages) the receiver took with a 2xx.
    dlr_sent: int = 0
    inbound_sent: int = 0
    #: Failed report deliveries that were rescheduled, and reports given up after every attempt.
    dlr_retries: int = 0
    dlr_failed: int = 0
    #: Lookups performed (and charged).
    lookups: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The counters as a JSON-ready dict."""
        return asdict(self)
