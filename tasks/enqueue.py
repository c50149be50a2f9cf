"""The enqueuer the CLI loads to queue batch tasks, so the ``dispatcher`` package never imports Celery."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import redis
from celery import Celery

from dispatcher.keys import Keys
from dispatcher.settings import Settings
from tasks.app import app, batch_label, campaign_name, make_app
from tasks.dispatch import SEND_BATCH


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
        settings = settings or Settings.from_env()
        self._app = _app_for(settings.effective_broker_url)
        self._redis = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=10)
        self._keys = Keys(settings.key_prefix)

    def enqueue(self, campaign_id: str, numbers: Sequence[int]) -> None:
        """Queue ``send_batch`` for each batch number, labelled for Flower with the campaign's name."""
        if not numbers:
            return
        name = campaign_name(self._redis, self._keys, campaign_id)
        with self._app.producer_or_acquire() as producer:
            for n in numbers:
                self._app.send_task(SEND_BATCH, args=(campaign_id, n), producer=producer,
                                    shadow=batch_label(name, n))
