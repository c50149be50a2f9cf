"""The enqueuer the CLI loads to queue batch tasks, so the ``dispatcher`` package never imports Celery."""

from __future__ import annotations

from collections.abc import Sequence

from tasks.dispatch import enqueue_batches


class CeleryEnqueuer:
    """Queue batch tasks on the project's Celery app."""

    def enqueue(self, campaign_id: str, numbers: Sequence[int]) -> None:
        """Queue ``send_batch`` for each batch number."""
        enqueue_batches(campaign_id, list(numbers))
