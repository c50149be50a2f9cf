"""The one way batch tasks reach the queue: :class:`CeleryEnqueuer`, used by the CLI, beat and the
batch task itself (``dispatcher.sending.campaigns.Enqueuer`` is the protocol it fulfils)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from celery import Celery

from dispatcher.keys import Keys
from dispatcher.settings import Settings
from tasks.app import app, make_app

#: Registered name of the batch task (``tasks.dispatch.send_batch_task``).
SEND_BATCH = "dispatcher.send_batch"


@lru_cache(maxsize=4)
def _app_for(settings: Settings) -> Celery:
    # The module-level app was configured from the environment at import; a caller with another
    # broker or key prefix (a test, the demo) gets an app of its own, configured from its whole
    # settings: the queue carries the prefix.
    if (settings.effective_broker_url == app.conf.broker_url
            and Keys(settings.key_prefix).queue() == app.conf.task_default_queue):
        return app
    return make_app(settings)


class CeleryEnqueuer:
    """Queue batch tasks on the broker of ``settings`` (default: the environment's)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._app = _app_for(settings or Settings.from_env())

    def enqueue(self, campaign_id: str, numbers: Sequence[int]) -> None:
        """Queue one ``send_batch`` task per batch number (one broker connection for all of them)."""
        if not numbers:
            return
        with self._app.producer_or_acquire() as producer:
            for n in numbers:
                self._app.send_task(SEND_BATCH, args=(campaign_id, n), producer=producer)
