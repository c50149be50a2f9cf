"""Dispatch tasks. Each decodes ids, calls one function of ``dispatcher`` and decides retries."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import redis
from celery import Task
from celery.exceptions import Reject, Retry

from dispatcher.resources import Resources
from dispatcher.sending.attempt import Action, BatchOutcome, SendContext, send_batch
from dispatcher.sending.lifecycle import FINAL, State
from dispatcher.sending.telemetry import Telemetry
from dispatcher.settings import Settings
from tasks.app import app
from tasks.enqueue import SEND_BATCH, CeleryEnqueuer

#: Retries of a batch task that failed for an unexpected reason (a bug), before it is left failed.
UNEXPECTED_RETRIES = 8

_local = threading.local()
log = logging.getLogger(__name__)


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
        if outcome is None or outcome.action not in (Action.SKIP, Action.BUSY, Action.DONE):  # only real attempts
            telemetry.batch_done(time.monotonic() - started)
        telemetry.flush()


class CampaignLost(Exception):
    """The campaign of a task vanished from Redis without expiring: Redis lost data."""


@app.task(name=SEND_BATCH, bind=True, max_retries=None, acks_late=True, reject_on_worker_lost=True)
def send_batch_task(self: Task, campaign_id: str, batch: int) -> dict[str, Any]:
    """Send batch ``batch`` of campaign ``campaign_id``; the result is a small summary for Flower."""
    s = send_context()
    try:
        outcome = timed_send(s, campaign_id, int(batch))
    except redis.exceptions.RedisError as exc:
        # Redis is away: nothing was recorded, and the batch's claim (if any) expires with its
        # lease, after which the retry reconciles. Keep trying; the store is the source of truth.
        _publish(partial(self.retry, countdown=2.0, exc=exc))
        raise
    except Exception as exc:  # a bug must not silently strand a batch: retry a few times, then fail loudly
        if self.request.retries >= UNEXPECTED_RETRIES:
            raise
        _publish(partial(self.retry, countdown=min(60.0, 2.0 ** self.request.retries), exc=exc))
        raise
    if outcome.action == Action.LOST:
        # Not a success: the task failed because its campaign is gone (`dispatcher status` says why).
        raise CampaignLost(f"campaign {campaign_id} is no longer in Redis although it never expired: "
                           "Redis lost data; `dispatcher status` reports it.")
    _publish(lambda: CeleryEnqueuer(s.settings).enqueue(campaign_id, outcome.enqueue))
    if outcome.action not in (Action.SKIP, Action.BUSY) and outcome.campaign_state in FINAL:
        # This call settled the campaign's last batch: start the TTL of all its keys (once, not per task).
        s.store.expire(campaign_id, s.settings.campaign_ttl_s)
    if outcome.retry_in is not None and outcome.campaign_state not in (State.PAUSED, State.FAILED):
        _publish(partial(self.retry, countdown=max(0.05, outcome.retry_in)))
    return flower_summary(campaign_id, outcome)


def _publish(publish: Callable[[], Any]) -> None:
    """Run a publish (an enqueue or ``self.retry``); never acknowledge a task whose follow-up was lost.

    ``self.retry`` raises ``Retry`` once the new message is published, which is passed on. Any other
    error means the broker did not take the message: the task is rejected back to its queue
    instead of being acknowledged, and the watchdog re-drives it if the broker loses it too.
    """
    try:
        publish()
    except Retry:
        raise
    except Exception as exc:
        log.warning("could not publish a follow-up task (%s); requeueing this one", type(exc).__name__)
        raise Reject(f"publish failed: {type(exc).__name__}", requeue=True) from exc


def flower_summary(campaign_id: str, outcome: BatchOutcome) -> dict[str, Any]:
    """The task's result as Flower shows it: what happened and the counts that are not zero first,
    then the batch, the attempt and the campaign (Flower cuts long results off on the right)."""
    tail = ("batch", "attempt")
    counts = {k: v for k, v in outcome.summary.items() if k not in tail and k != "action" and v not in (0, "", None)}
    return {"action": outcome.summary.get("action", outcome.action), **counts,
            **{k: outcome.summary[k] for k in tail if k in outcome.summary}, "campaign": campaign_id}
