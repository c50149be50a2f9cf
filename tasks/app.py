"""The Celery application, configured from the project's settings.

Late acknowledgement with reject-on-worker-lost and prefetch 1: a task whose worker dies is
delivered again, and the batch claim in Redis (see ``dispatcher.batches``) makes the second
delivery harmless. JSON only: task arguments are ids, never recipients or tokens.
"""

from __future__ import annotations

import logging

from celery import Celery

from dispatcher.settings import Settings

#: Queue every dispatch task goes to.
QUEUE = "dispatcher"
#: Seconds after which the Redis broker hands an unacknowledged task to another worker. Our
#: retries use short countdowns (at most a minute), well under it, so nothing is redelivered early.
VISIBILITY_TIMEOUT_S = 600


def make_app(settings: Settings | None = None) -> Celery:
    """Build the Celery app for ``settings`` (default: from the environment)."""
    settings = settings or Settings.from_env()
    app = Celery("dispatcher", broker=settings.effective_broker_url, include=["tasks.dispatch"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_send_sent_event=True,
        enable_utc=True,
    )
    return app


# httpx logs every request at INFO; a worker sends hundreds a second.
logging.getLogger("httpx").setLevel(logging.WARNING)

app = make_app()
