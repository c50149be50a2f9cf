"""The one way batch tasks reach the queue: :class:`CeleryEnqueuer`, used by the CLI, beat and the
batch task itself (``dispatcher.sending.enqueuer.Enqueuer`` is the protocol it fulfils)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from celery import Celery

from dispatcher.resources import Resources
from dispatcher.settings import Settings
from tasks.app import app, batch_label, broker_connection, campaign_name, make_app

#: Registered names of the batch tasks: ``tasks.dispatch.send_batches_task`` and, for tasks queued
#: by an older version, ``send_batch_task``.
SEND_BATCHES = "dispatcher.send_batches"
SEND_BATCH = "dispatcher.send_batch"
#: Batches per task: enough to make Celery's per-message cost small, few enough that a slow batch
#: holds back little (a group's follow-ons are published when the whole group is done).
GROUP = 8
#: Most batches per task, when the queue window holds many groups (a high rate limit, or none):
#: Celery's cost per task (receiving it, three task events, the ack, the follow-on publish) is
#: paid once per group, so at a high rate larger groups leave the worker more time to send.
MAX_GROUP = 32


def group_size(window: int) -> int:
    """Batches per task for a campaign that keeps ``window`` batches queued: ``GROUP``, up to
    ``MAX_GROUP`` while the window still holds at least 8 groups (so a group that waits for its
    slowest batch holds back little of the window)."""
    return max(GROUP, min(MAX_GROUP, window // 8))


def groups(numbers: Sequence[int], size: int = GROUP) -> list[list[int]]:
    """Batch numbers cut into groups of ``size``, in order."""
    ordered = [int(n) for n in numbers]
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


@lru_cache(maxsize=4)
def _app_for(settings: Settings) -> Celery:
    # The module-level app was configured from the environment at import; a caller with another
    # broker or queue (a test, the demo) gets an app of its own, configured from its whole settings.
    if broker_connection(settings)[0] == app.conf.broker_url and settings.task_queue == app.conf.task_default_queue:
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
        self._group = group_size(settings.effective_queue_window)

    def enqueue(self, campaign_id: str, numbers: Sequence[int], *, countdown: float | None = None,
                tries: int = 0) -> None:
        """Queue ``send_batches`` tasks for the batch numbers, :func:`group_size` per task, each labelled for
        Flower with the campaign's name and its first batch (one broker connection for all).

        ``countdown`` delays them (seconds); ``tries`` counts earlier unexpected failures.
        """
        if not numbers:
            return
        name = campaign_name(self._redis, self._keys, campaign_id)
        with self._app.producer_or_acquire() as producer:
            for group in groups(numbers, self._group):
                args = (campaign_id, group, tries) if tries else (campaign_id, group)
                self._app.send_task(SEND_BATCHES, args=args, producer=producer, countdown=countdown,
                                    shadow=batch_label(name, group[0]))
