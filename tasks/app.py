"""The Celery application, configured from the project's settings.

Late acknowledgement with reject-on-worker-lost and prefetch 1: a task whose worker dies is
delivered again, and the batch claim in Redis (see ``dispatcher.sending.batches``) makes the second
delivery harmless. JSON only: task arguments are ids, never recipients or tokens.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from typing import Any

import redis
from celery import Celery, bootsteps, signals
from click import Option

from dispatcher.keys import Keys
from dispatcher.resources import DIRECT_SCHEMES, SENTINEL_SCHEMES, connect_redis, parse_redis_url
from dispatcher.sending.health import HEARTBEAT_EVERY_S, WorkerRegistry
from dispatcher.settings import Settings
from tasks import broker

#: Seconds after which the Redis broker hands an unacknowledged task to another worker. Our
#: retries use short countdowns (at most a minute), well under it, so nothing is redelivered early.
VISIBILITY_TIMEOUT_S = 600
#: Broker URL schemes that name a Redis (parsed like ``REDIS_URL``); others go to Celery as they are.
REDIS_SCHEMES = DIRECT_SCHEMES + SENTINEL_SCHEMES
#: Seconds between two looks at the batches waiting for their send window.
RELEASE_EVERY_S = 5.0


def broker_connection(settings: Settings) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    """Celery's broker URL, extra transport options and ``broker_use_ssl`` for ``settings``.

    One URL for every part (issue 23): a Redis URL, Sentinel ones included, is parsed like the
    store's (a Sentinel URL becomes kombu's ``sentinel://`` broker with its ``master_name``);
    any other broker (RabbitMQ) is handed to Celery as is.

    Raises:
        ConfigurationError: when a Redis broker URL is malformed (one sentence).
    """
    url = settings.effective_broker_url
    if url.partition("://")[0].lower() not in REDIS_SCHEMES:
        return url, {}, None
    name = "CELERY_BROKER_URL" if settings.broker_url else "REDIS_URL"
    return parse_redis_url(url, ca_file=settings.redis_ca_file, name=name).broker()


def redbeat_connection(redis_url: str, ca_file: str = "") -> dict[str, Any]:
    """``redbeat_redis_url`` without credentials, and ``redbeat_redis_options`` that carry them
    (a Sentinel URL gives redbeat's sentinel options; see ``RedisTarget.redbeat``).

    Raises:
        ConfigurationError: when ``redis_url`` is not a Redis URL.
    """
    return parse_redis_url(redis_url, ca_file=ca_file).redbeat()


def batch_label(name: str, batch: int) -> str:
    """How Flower lists a batch task (its ``shadow`` name): ``send_batch <campaign name> #<batch>``."""
    return f"send_batch {name or '?'} #{batch}"


_NAMES: dict[tuple[str, str], str] = {}


def campaign_name(client: Any, keys: Keys, campaign_id: str) -> str:
    """A campaign's name, read once per process (names never change), for task labels."""
    key = (keys.prefix, campaign_id)
    if key not in _NAMES:
        if len(_NAMES) > 10_000:
            _NAMES.clear()
        raw = client.hget(keys.campaign(campaign_id), "name")
        _NAMES[key] = raw.decode() if raw else campaign_id
    return _NAMES[key]


def make_app(settings: Settings | None = None) -> Celery:
    """Build the Celery app for ``settings`` (default: from the environment)."""
    settings = settings or Settings.from_env()
    # kombu's Redis transports, kept from exiting the worker when the broker dies (tasks/broker.py).
    broker.register()
    broker_url, transport_options, broker_ssl = broker_connection(settings)
    app = Celery("dispatcher", broker=broker_url,
                 include=["tasks.dispatch", "tasks.schedules", "tasks.watchdog"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # The queue carries the key prefix (unless DISPATCHER_QUEUE names one): two installs sharing
        # a broker never take each other's tasks.
        task_default_queue=settings.task_queue,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S, **transport_options},
        **({"broker_use_ssl": broker_ssl} if broker_ssl else {}),
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        enable_utc=True,
        # Beat: schedules live in Redis (celery-redbeat), editable at run time; one beat holds the lock.
        # The password goes in the options, not the URL: Celery masks a "password" key in `inspect
        # conf` and Flower's config tab, but shows any other setting, redbeat's URL included, as is.
        **redbeat_connection(settings.redis_url, settings.redis_ca_file),
        redbeat_key_prefix=Keys(settings.key_prefix).redbeat_prefix() + ":",
        redbeat_lock_timeout=RELEASE_EVERY_S * 5,
        beat_max_loop_interval=1,
        # redbeat's scheduler, kept alive through a Redis failover (tasks/beat.py).
        beat_scheduler="tasks.beat.Scheduler",
        beat_schedule={
            "release-windows": {"task": "dispatcher.release_windows", "schedule": RELEASE_EVERY_S},
        },
    )
    app.user_options["worker"].add(Option(
        ["--in-flight"], type=int, default=0, show_default=True,
        help="Batches in flight per worker process; 0 derives it from the rate limit and the observed latency."))
    app.steps["worker"].add(InFlightStep)
    return app


class InFlightStep(bootsteps.Step):
    """Hands the worker's ``--in-flight`` option to the dispatch tasks before the pool starts."""

    def __init__(self, parent: Any, in_flight: int = 0, **options: Any) -> None:
        super().__init__(parent, **options)
        import tasks.dispatch  # here, not at the top: tasks.dispatch imports this module

        tasks.dispatch.fixed_in_flight = max(0, int(in_flight or 0))


class Heartbeat:
    """A daemon thread that tells Redis this worker is alive, so that ``submit --wait`` and
    ``status`` can say when no worker runs (see ``dispatcher.sending.health``)."""

    def __init__(self, settings: Settings) -> None:
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        # Short timeouts: a heartbeat that cannot be written soon is simply tried again at the next beat.
        client = connect_redis(settings.redis_url, connect_timeout_s=HEARTBEAT_EVERY_S, timeout_s=HEARTBEAT_EVERY_S,
                               ca_file=settings.redis_ca_file)
        self._registry = WorkerRegistry(client, Keys(settings.key_prefix))
        self._limits = (settings.rate_limit_per_min, settings.message_rate_per_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dispatcher-heartbeat", daemon=True)

    def start(self) -> None:
        """Write the first heartbeat now (before the worker says "ready"), then keep writing them."""
        self._beat()
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and leave the registry at once."""
        self._stop.set()
        with contextlib.suppress(redis.exceptions.RedisError):  # else the heartbeat runs out by itself
            self._registry.leave(self.worker)

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_EVERY_S):
            self._beat()

    def _beat(self) -> None:
        try:
            self._registry.beat(self.worker)
            self._registry.publish_limits(*self._limits)  # what the console's "Pace N of M" shows
        except redis.exceptions.RedisError:
            logging.getLogger(__name__).warning("cannot write the worker heartbeat to Redis; retrying")


_heartbeat: Heartbeat | None = None


@signals.worker_ready.connect
def _start_heartbeat(**_: Any) -> None:
    global _heartbeat
    _heartbeat = Heartbeat(Settings.from_env())
    _heartbeat.start()


@signals.worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    if _heartbeat is not None:
        _heartbeat.stop()


@signals.worker_init.connect
def _check_start(**_: Any) -> None:
    """A worker refuses unsafe settings in one sentence before it takes any task."""
    from tasks.watchdog import check_start

    check_start(Settings.from_env())


# httpx logs every request at INFO; a worker sends hundreds a second.
logging.getLogger("httpx").setLevel(logging.WARNING)

app = make_app()
