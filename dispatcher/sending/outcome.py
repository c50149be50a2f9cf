"""What one attempt at a batch came to, and what the task shell must do next."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Action(StrEnum):
    """What an attempt at a batch came to."""

    DONE = "done"
    BUSY = "busy"
    SKIP = "skip"
    RATE_LIMITED = "rate_limited"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    WAITING = "waiting"
    PAUSED = "paused"
    FAILED = "failed"
    RETRY = "retry"
    #: Another claim took the batch while this attempt ran: it only added terminal records.
    STALE = "stale"
    #: The campaign's data vanished from Redis (lost, not expired): nothing can be done here.
    LOST = "lost"


@dataclass
class BatchOutcome:
    """What the task must do next: retry in ``retry_in`` seconds (or not), enqueue ``enqueue``."""

    action: Action
    retry_in: float | None = None
    enqueue: list[int] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    campaign_state: str = ""
    #: Bulk requests the attempt made (counted in its campaign's share of its lane).
    requests: int = 0


def backoff(fails: int, base_s: float, cap_s: float) -> float:
    """Exponential backoff with jitter: about ``base * 2**(fails-1)`` seconds, between half and all of it."""
    delay = min(cap_s, base_s * 2 ** max(0, fails - 1))
    return delay * random.uniform(0.5, 1.0)
