"""Dispatch tasks. Each decodes ids, calls one function of ``dispatcher`` and decides retries."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import redis
from celery import Task
from celery.exceptions import Reject, Retry

from dispatcher.instasent.client import InstasentClient
from dispatcher.keys import Keys
from dispatcher.sending.attempt import Action, Sender, send_batch
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.lifecycle import FINAL, State
from dispatcher.sending.ratelimit import RateLimiter
from dispatcher.sending.store import CampaignStore
from dispatcher.settings import Settings
from tasks.app import app

#: Retries of a batch task that failed for an unexpected reason (a bug), before it is left failed.
UNEXPECTED_RETRIES = 8
#: Registered name of the batch task.
SEND_BATCH = "dispatcher.send_batch"

_local = threading.local()
log = logging.getLogger(__name__)


def sender() -> Sender:
    """The per-process (per-thread) sender: one Redis pool and one HTTP pool, built on first use."""
    current: Sender | None = getattr(_local, "sender", None)
    if current is None:
        settings = Settings.from_env()
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=30, socket_connect_timeout=5)
        keys = Keys(settings.key_prefix)
        current = Sender(settings=settings, client=InstasentClient.from_settings(settings),
                         store=CampaignStore(client, keys), ops=BatchOps(client, keys),
                         limiter=RateLimiter(client, keys))
        _local.sender = current
    return current


def enqueue_batches(campaign_id: str, numbers: list[int] | range) -> None:
    """Queue one ``send_batch`` task per batch number."""
    for n in numbers:
        send_batch_task.apply_async((campaign_id, n))


class CampaignLost(Exception):
    """The campaign of a task vanished from Redis without expiring: Redis lost data."""


@app.task(name=SEND_BATCH, bind=True, max_retries=None, acks_late=True, reject_on_worker_lost=True)
def send_batch_task(self: Task, campaign_id: str, batch: int) -> dict[str, Any]:
    """Send batch ``batch`` of campaign ``campaign_id``; the result is a small summary for Flower."""
    s = sender()
    try:
        outcome = send_batch(s, campaign_id, int(batch))
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
    _publish(lambda: enqueue_batches(campaign_id, outcome.enqueue))
    if outcome.action not in (Action.SKIP, Action.BUSY) and outcome.campaign_state in FINAL:
        # This call settled the campaign's last batch: start the TTL of all its keys (once, not per task).
        s.store.expire(campaign_id, s.settings.campaign_ttl_s)
    if outcome.retry_in is not None and outcome.campaign_state not in (State.PAUSED, State.FAILED):
        _publish(lambda: self.retry(countdown=max(0.05, outcome.retry_in or 0.0)))
    return outcome.summary


def _publish(publish: Callable[[], Any]) -> None:
    """Run a publish (``enqueue_batches`` or ``self.retry``); never acknowledge a task whose follow-up was lost.

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
