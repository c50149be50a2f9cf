"""Dispatch tasks. Each decodes ids, calls one function of ``dispatcher`` and decides retries."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import redis
from celery import Task

from dispatcher.resources import Resources
from dispatcher.sending.attempt import BatchOutcome, SendContext, send_batch
from dispatcher.sending.lifecycle import FINAL, State
from dispatcher.sending.telemetry import Telemetry
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
        resources = Resources.from_settings(Settings.from_env())
        current = resources.send_context()
        _local.context = current
        _local.telemetry = _telemetry_for(current, resources)
    return current


def _telemetry_for(context: SendContext, resources: Resources) -> Telemetry:
    """Counters of this process's bulk answers, slot waits and batch durations, for ``/metrics``."""
    telemetry = Telemetry(resources.redis, resources.keys)

    def count(response: httpx.Response) -> None:
        if response.request.method == "POST" and response.request.url.path.endswith("/sms/bulk"):
            telemetry.bulk_answered(response.status_code)

    context.client.on_response(count)
    return telemetry


def timed_send(context: SendContext, campaign_id: str, batch: int) -> BatchOutcome:
    """``send_batch``, with its duration and slot waits added to the worker's telemetry."""
    telemetry: Telemetry = _local.telemetry
    started, waited = time.monotonic(), context.limiter.waited_s
    outcome: BatchOutcome | None = None
    try:
        outcome = send_batch(context, campaign_id, batch)
        return outcome
    finally:
        telemetry.waited(context.limiter.waited_s - waited)
        if outcome is None or outcome.action not in ("skip", "busy", "done"):  # only real attempts
            telemetry.batch_done(time.monotonic() - started)
        telemetry.flush()


@app.task(name=SEND_BATCH, bind=True, max_retries=None, acks_late=True, reject_on_worker_lost=True)
def send_batch_task(self: Task, campaign_id: str, batch: int) -> dict[str, Any]:
    """Send batch ``batch`` of campaign ``campaign_id``; the result is a small summary for Flower."""
    s = send_context()
    try:
        outcome = timed_send(s, campaign_id, int(batch))
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
    return flower_summary(campaign_id, outcome)


def flower_summary(campaign_id: str, outcome: BatchOutcome) -> dict[str, Any]:
    """The task's result as Flower shows it: what happened and the counts that are not zero first,
    then the batch, the attempt and the campaign (Flower cuts long results off on the right)."""
    tail = ("batch", "attempt")
    counts = {k: v for k, v in outcome.summary.items() if k not in tail and k != "action" and v not in (0, "", None)}
    return {"action": outcome.summary.get("action", outcome.action), **counts,
            **{k: outcome.summary[k] for k in tail if k in outcome.summary}, "campaign": campaign_id}
