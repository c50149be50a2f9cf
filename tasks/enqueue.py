"""The one way batch tasks reach the queue: :class:`CeleryEnqueuer`, used by the CLI, beat and the
batch task itself (``dispatcher.sending.campaigns.Enqueuer`` is the protocol it fulfils)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from celery import Celery

from dispatcher.resources import Resources
from dispatcher.settings import Settings
from tasks.app import app, batch_label, campaign_name, make_app

#: Registered name of the batch task (``tasks.dispatch.send_batch_task``).
SEND_BATCH = "dispatcher.send_batch"


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

    def enqueue(self, campaign_id: str, numbers: Sequence[int]) -> None:
        """Queue ``send_batch`` for each batch number, labelled for Flower with the campaign's name."""
        if not numbers:
            return
        name = campaign_name(self._redis, self._keys, campaign_id)
        with self._app.producer_or_acquire() as producer:
            for n in numbers:
                self._app.send_task(SEND_BATCH, args=(campaign_id, n), producer=producer,
                                    shadow=batch_label(name, n))
