"""The enqueuer the CLI loads to queue batch tasks, so the ``dispatcher`` package never imports Celery."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from celery import Celery

from dispatcher.settings import Settings
from tasks.app import app, make_app
from tasks.dispatch import SEND_BATCHES, groups


@lru_cache(maxsize=4)
def _app_for(broker_url: str) -> Celery:
    # The module-level app was configured from the environment at import; a caller with other
    # settings (a test, the demo) gets an app of its own for its broker.
    if broker_url == app.conf.broker_url:
        return app
    return make_app(Settings(redis_url=broker_url))


class CeleryEnqueuer:
    """Queue batch tasks on the broker of ``settings`` (default: the environment's)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._app = _app_for((settings or Settings.from_env()).effective_broker_url)

    def enqueue(self, campaign_id: str, numbers: Sequence[int]) -> None:
        """Queue ``send_batches`` tasks for the batch numbers, a group of them per task."""
        if not numbers:
            return
        with self._app.producer_or_acquire() as producer:
            for group in groups(list(numbers)):
                self._app.send_task(SEND_BATCHES, args=(campaign_id, group), producer=producer)
