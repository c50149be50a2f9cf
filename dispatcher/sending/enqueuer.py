"""How batch tasks reach the queue: the :class:`Enqueuer` protocol. The library is handed one and
never imports Celery; the Celery one is ``tasks.enqueue.CeleryEnqueuer``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Enqueuer(Protocol):
    """Puts batch tasks on the queue."""

    def enqueue(self, campaign_id: str, numbers: Sequence[int]) -> None:
        """Queue one task per batch number."""
