"""The one way batch tasks reach the queue: :class:`CeleryEnqueuer`, used by the CLI, beat and the
batch task itself (``dispatcher.sending.campaigns.Enqueuer`` is the protocol it fulfils)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from celery import Celery

from dispatcher.resources import Resources
from dispatcher.settings import Settings
from tasks.app import app, batch_label, campaign_name, make_app

#: Registered names of the batch tasks: ``tasks.dispatch.send_batches_task`` and, for tasks queued
#: by an older version, ``send_batch_task``.
SEND_BATCHES = "dispatcher.send_batches"
SEND_BATCH = "dispatcher.send_batch"
#: Batches per task: enough to make Celery's per-message cost small, few enough that a slow batch
#: holds back little (a group's follow-ons are published when the whole group is done).
GROUP = 8


def groups(numbers: Sequence[int]) -> list[list[int]]:
    """Batch numbers cut into task-sized groups, in order."""
    ordered = [int(n) for n in numbers]
    return [ordered[i:i + GROUP] for i in range(0, len(ordered), GROUP)]


@lru_cache(maxsize=4)
def _app_for(settings: Settings) -> Celery:
    # The module-level app was configured from the environment at import; a caller with another
    # broker or queue (a test, the demo) gets an app of its own, configured from its whole settings.
    if settings.effective_broker_url == app.conf.broker_url and settings.task_queue == app.conf.task_default_queue:
        return app
    return make_app(settings)


@lru_cache(maxsize=4)
def _resources_for(settings: Settings) -> Resources:
    # One Redis pool per process for the campaign names in task labels, not one per enqueue.
    return Resources.from_settings(settings)


class CeleryEnqueuer:
    """Queue batch tasks on the broker of ``settings`` (default: the environment's)."""

    def __init__(self, settings: Settings | None = None) -> None:
        settings = settings or Settings.from_env()
        self._app = _app_for(settings)
        resources = _resources_for(settings)
        self._redis, self._keys = resources.redis, resources.keys

    def enqueue(self, campaign_id: str, numbers: Sequence[int], *, countdown: float | None = None,
                tries: int = 0) -> None:
        """Queue ``send_batches`` tasks for the batch numbers, ``GROUP`` per task, each labelled for
        Flower with the campaign's name and its first batch (one broker connection for all).

        ``countdown`` delays them (seconds); ``tries`` counts earlier unexpected failures.
        """
        if not numbers:
            return
        name = campaign_name(self._redis, self._keys, campaign_id)
        with self._app.producer_or_acquire() as producer:
            for group in groups(numbers):
                args = (campaign_id, group, tries) if tries else (campaign_id, group)
                self._app.send_task(SEND_BATCHES, args=args, producer=producer, countdown=countdown,
                                    shadow=batch_label(name, group[0]))
