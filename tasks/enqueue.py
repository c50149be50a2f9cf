"""The enqueuer the CLI loads to queue batch tasks, so the ``dispatcher`` package never imports Celery."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from celery import Celery

from dispatcher.keys import Keys
from dispatcher.settings import Settings
from tasks.app import app, make_app
from tasks.dispatch import SEND_BATCH


@lru_cache(maxsize=4)
def _app_for(broker_url: str, key_prefix: str) -> Celery:
    # The module-level app was configured from the environment at import; a caller with other
    # settings (a test, the demo) gets an app of its own for its broker and its queue.
    if broker_url == app.conf.broker_url and Keys(key_prefix).queue() == app.conf.task_default_queue:
        return app
    return make_app(Settings(redis_url=broker_url, key_prefix=key_prefix))


class CeleryEnqueuer:
    """Queue batch tasks on the broker of ``settings`` (default: the environment's)."""

    def __init__(self, settings: Settings | None = None) -> None:
        settings = settings or Settings.from_env()
        self._app = _app_for(settings.effective_broker_url, settings.key_prefix)

    def enqueue(self, campaign_id: str, numbers: Sequence[int]) -> None:
        """Queue ``send_batch`` for each batch number."""
        if not numbers:
            return
        with self._app.producer_or_acquire() as producer:
            for n in numbers:
                self._app.send_task(SEND_BATCH, args=(campaign_id, n), producer=producer)
