"""Dispatch tasks. Each decodes ids, calls one function of ``dispatcher`` and decides retries."""

from __future__ import annotations

import threading
from typing import Any

import redis
from celery import Task

from dispatcher.resources import Resources
from dispatcher.sending.attempt import SendContext, send_batch
from dispatcher.sending.lifecycle import FINAL, State
from dispatcher.settings import Settings
from tasks.app import app
from tasks.enqueue import SEND_BATCH, CeleryEnqueuer

#: Retries of a batch task that failed for an unexpected reason (a bug), before it is left failed.
UNEXPECTED_RETRIES = 8

_local = threading.local()


def send_context() -> SendContext:
    """This process's (thread's) send context: one Redis pool and one HTTP pool, built on first use."""
    current: SendContext | None = getattr(_local, "context", None)
    if current is None:
        current = Resources.from_settings(Settings.from_env()).send_context()
        _local.context = current
    return current


@app.task(name=SEND_BATCH, bind=True, max_retries=None, acks_late=True, reject_on_worker_lost=True)
def send_batch_task(self: Task, campaign_id: str, batch: int) -> dict[str, Any]:
    """Send batch ``batch`` of campaign ``campaign_id``; the result is a small summary for Flower."""
    s = send_context()
    try:
        outcome = send_batch(s, campaign_id, int(batch))
    except redis.exceptions.RedisError as exc:
        # Redis is away: nothing was recorded, and the batch's claim (if any) expires with its
        # lease, after which the retry reconciles. Keep trying; the store is the source of truth.
        raise self.retry(countdown=2.0, exc=exc) from exc
    except Exception as exc:  # a bug must not silently strand a batch: retry a few times, then fail loudly
        if self.request.retries >= UNEXPECTED_RETRIES:
            raise
        raise self.retry(countdown=min(60.0, 2.0 ** self.request.retries), exc=exc) from exc
    CeleryEnqueuer(s.settings).enqueue(campaign_id, outcome.enqueue)
    if outcome.action not in ("skip", "busy") and outcome.campaign_state in {state.value for state in FINAL}:
        # This call settled the campaign's last batch: start the TTL of all its keys (once, not per task).
        s.store.expire(campaign_id, s.settings.campaign_ttl_s)
    if outcome.retry_in is not None and outcome.campaign_state not in (State.PAUSED.value, State.FAILED.value):
        raise self.retry(countdown=max(0.05, outcome.retry_in))
    return outcome.summary
