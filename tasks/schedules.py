"""celery-redbeat glue: one redbeat entry per schedule triggers ``dispatcher.fire_schedule``; a
static entry runs ``dispatcher.release_windows``. The decisions live in :mod:`dispatcher.sending.schedules`."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from celery import Celery
from celery.schedules import schedule as every
from redbeat import RedBeatSchedulerEntry
from redbeat.schedulers import ensure_conf

from dispatcher.instasent.client import InstasentClient
from dispatcher.resources import Resources
from dispatcher.sending import campaigns
from dispatcher.sending.schedules.definition import ScheduleDef
from dispatcher.sending.schedules.firing import Firer
from dispatcher.sending.schedules.store import ScheduleStore
from dispatcher.settings import Settings
from tasks.app import app, make_app
from tasks.dispatch import send_context
from tasks.enqueue import CeleryEnqueuer

FIRE_SCHEDULE = "dispatcher.fire_schedule"
RELEASE_WINDOWS = "dispatcher.release_windows"


def entry_name(name: str) -> str:
    return f"schedule:{name}"


def save_entry(definition: ScheduleDef, celery_app: Celery = app) -> None:
    """Create or update the redbeat entry of a schedule; beat picks it up without a restart."""
    entry = RedBeatSchedulerEntry(entry_name(definition.name), FIRE_SCHEDULE,
                                  every(timedelta(seconds=definition.trigger_every_s)),
                                  args=[definition.name], app=celery_app)
    entry.save()


def delete_entry(name: str, celery_app: Celery = app) -> None:
    """Remove the redbeat entry of a schedule (missing is fine)."""
    key = ensure_conf(celery_app).key_prefix + entry_name(name)
    with contextlib.suppress(KeyError):
        RedBeatSchedulerEntry.from_key(key, app=celery_app).delete()


class Entries:
    """``save_entry`` and ``delete_entry`` on the redbeat of ``settings`` (the console's ``ScheduleEntries``)."""

    def __init__(self, settings: Settings) -> None:
        self._app = make_app(settings)

    def save_entry(self, definition: ScheduleDef) -> None:
        save_entry(definition, self._app)

    def delete_entry(self, name: str) -> None:
        delete_entry(name, self._app)


def firer(settings: Settings | None = None) -> Firer:
    """A firer for this process: the worker's connections, or fresh ones for ``settings``."""
    if settings is None:
        s = send_context()
        settings, store, ops = s.settings, s.store, s.ops
    else:
        resources = Resources.from_settings(settings)
        store, ops = resources.store, resources.ops
    chosen = settings
    return Firer(settings=chosen, schedules=ScheduleStore(store.redis, store.keys), store=store, ops=ops,
                 enqueuer=CeleryEnqueuer(chosen), client_factory=lambda: InstasentClient.from_settings(chosen))


@app.task(name=FIRE_SCHEDULE, acks_late=True)
def fire_schedule(name: str) -> dict[str, Any] | None:
    """Fire schedule ``name`` if it is due; the result is the firing record (None for a quiet tick).

    The firing loads its list here, in this task (``submission.submit``: a counting pass, then
    a storing pass that queues each chunk's batches as it is stored). That takes the list's time
    (seconds per million rows) and holds this one worker process, with bounded memory; the other
    processes send the batches meanwhile, so with ``--concurrency 1`` sending waits for the load.
    A redelivery (the worker died, or a load longer than the visibility timeout) finds the due
    time claimed and does nothing; a load cut short leaves the campaign ``interrupted``, which
    ``dispatcher resume ID`` continues. Loading here is simple and enough for lists of millions;
    a dedicated loading queue would be the next step if firings must never share workers.
    """
    firing = firer().fire(name)
    return firing.to_json() if firing else None


# No task events: beat runs it every 5 s, so Flower's task list (which shows what sends events)
# was mostly this housekeeping and buried the campaigns' tasks (129 of them in 10 min). What it
# does is in the campaigns' own status (batches released, ``waiting_for``), and its log line stays.
@app.task(name=RELEASE_WINDOWS, send_events=False)
def release_windows() -> dict[str, Any]:
    """Queue batches whose send window opened, and campaigns queued behind a finished run."""
    s = send_context()
    released = campaigns.release_parked(s.ops, CeleryEnqueuer(s.settings))
    started = firer().start_queued()
    return {"released": released, "started": started}
