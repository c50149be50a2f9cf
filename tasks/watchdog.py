"""Run the watchdog inside every worker (beat is optional): a daemon thread in the worker's main
process sweeps every ``DISPATCHER_WATCHDOG_EVERY`` seconds; a Redis lock lets one sweep run at a
time across all workers. The decisions live in ``dispatcher.sending.watchdog``.

Start-up checks run here too: a worker refuses, in one sentence, settings whose POST deadline
could outlive the lease and a Redis that does not persist (see ``dispatcher.sending.durability``).
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutdown

from dispatcher.errors import ConfigurationError
from dispatcher.resources import Resources
from dispatcher.sending.durability import check_persistence
from dispatcher.sending.watchdog import Watchdog
from dispatcher.settings import Settings
from tasks.enqueue import CeleryEnqueuer

log = logging.getLogger(__name__)
_stop = threading.Event()


def check_start(settings: Settings) -> None:
    """Refuse to run a worker on unsafe settings.

    Raises:
        SystemExit: with one sentence, when the lease or the Redis durability check fails.
    """
    client = Resources.from_settings(settings).redis
    try:
        settings.require_token()
        settings.check_lease()
        check_persistence(client, settings)
    except ConfigurationError as exc:
        raise SystemExit(f"dispatcher: {exc}") from None
    finally:
        client.close()


def run_forever(settings: Settings, stop: threading.Event) -> None:
    """Sweep every ``settings.watchdog_every_s`` seconds until ``stop`` is set; errors are logged, not fatal."""
    resources = Resources.from_settings(settings)
    dog = Watchdog(resources.store, resources.ops, CeleryEnqueuer(settings), settings, name=socket.gethostname())
    while not stop.wait(settings.watchdog_every_s):
        try:
            swept = dog.sweep()
        except Exception as exc:  # Redis or the broker away: the next sweep tries again
            log.warning("watchdog sweep failed (%s); retrying in %.0f s", type(exc).__name__,
                        settings.watchdog_every_s)
            continue
        if swept is not None and (swept.redriven or swept.released or swept.data_lost):
            log.warning("watchdog: %s", swept.to_json())


@worker_ready.connect
def _start(**_: Any) -> None:
    settings = Settings.from_env()
    threading.Thread(target=run_forever, args=(settings, _stop), name="dispatcher-watchdog", daemon=True).start()


@worker_shutdown.connect
def _shutdown(**_: Any) -> None:
    _stop.set()
