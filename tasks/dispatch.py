"""Dispatch tasks. Each decodes ids, calls one function of ``dispatcher`` and decides retries.

``dispatcher.send_batches(campaign_id, numbers)`` is the unit of work: a group of up to ``GROUP``
batches that the process's :class:`~dispatcher.sending.pump.Pump` sends concurrently, each through
:func:`~dispatcher.sending.attempt.send_batch`. One Celery message (and one Flower row, whose
result lists what each batch did) per group instead of per batch, and the batches the group
reserves are published as new groups. ``dispatcher.send_batch`` (one batch) stays for tasks
queued by an older version.
"""

from __future__ import annotations

import os
import threading
from typing import Any, cast

import redis
from celery import Task

from dispatcher.keys import Keys
from dispatcher.sending.attempt import BatchOutcome, Sender, send_batch
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.lifecycle import FINAL, State
from dispatcher.sending.pump import Pump, TimedClient, requests_per_s
from dispatcher.sending.ratelimit import RateLimiter
from dispatcher.sending.store import CampaignStore
from dispatcher.settings import Settings
from tasks.app import app

#: Retries of a batch that failed for an unexpected reason (a bug), before it is left failed.
UNEXPECTED_RETRIES = 8
#: Registered names of the batch tasks.
SEND_BATCH = "dispatcher.send_batch"
SEND_BATCHES = "dispatcher.send_batches"
#: Batches per task: enough to make Celery's per-message cost small, few enough that a slow batch
#: holds back little (a group's follow-ons are published when the whole group is done).
GROUP = 8

_sender_lock = threading.Lock()
_sender: tuple[int, Sender] | None = None
_pump_lock = threading.Lock()
_pump: Pump | None = None
_pump_pid = 0
#: Batches in flight per process, fixed by ``dispatcher worker --concurrency``; 0: from the limit.
fixed_in_flight = 0


def sender() -> Sender:
    """The process's sender, shared by its threads: one Redis pool and one HTTP pool, built on first use.

    Shared rather than per thread: the clients are thread-safe, and one HTTP client per pump
    thread would cost a TLS context and a connection pool each.
    """
    global _sender
    with _sender_lock:
        if _sender is None or _sender[0] != os.getpid():  # a forked child builds its own
            settings = Settings.from_env()
            client = redis.Redis.from_url(settings.redis_url, socket_timeout=30, socket_connect_timeout=5)
            keys = Keys(settings.key_prefix)
            http = cast(TimedClient, TimedClient.from_settings(settings))
            http.on_round_trip = _observe
            _sender = (os.getpid(), Sender(settings=settings, client=http, store=CampaignStore(client, keys),
                                           ops=BatchOps(client, keys), limiter=RateLimiter(client, keys)))
        return _sender[1]


def _observe(round_trip_s: float) -> None:
    pump().observe(round_trip_s)


def pump() -> Pump:
    """The process's pump, sized from the rate limit (built on first use)."""
    global _pump, _pump_pid
    with _pump_lock:
        if _pump is None or _pump_pid != os.getpid():  # threads do not survive a fork
            _pump_pid = os.getpid()
            _pump = Pump(requests_per_s(Settings.from_env()), fixed=fixed_in_flight)
        return _pump


def groups(numbers: list[int] | range) -> list[list[int]]:
    """Batch numbers cut into task-sized groups, in order."""
    ordered = list(numbers)
    return [ordered[i:i + GROUP] for i in range(0, len(ordered), GROUP)]


def enqueue_batches(campaign_id: str, numbers: list[int] | range) -> None:
    """Queue ``send_batches`` tasks for the batch numbers, ``GROUP`` per task."""
    for group in groups(numbers):
        send_batches_task.apply_async((campaign_id, group))


def _settle(campaign_id: str, outcome: BatchOutcome) -> float | None:
    """Side effects of one batch's outcome; returns the seconds after which to retry it, or None."""
    s = sender()
    if outcome.action not in ("skip", "busy") and outcome.campaign_state in {state.value for state in FINAL}:
        # This call settled the campaign's last batch: start the TTL of all its keys (once, not per task).
        s.store.expire(campaign_id, s.settings.campaign_ttl_s)
    if outcome.retry_in is not None and outcome.campaign_state not in (State.PAUSED.value, State.FAILED.value):
        return max(0.05, outcome.retry_in)
    return None


@app.task(name=SEND_BATCHES, bind=True, acks_late=True, reject_on_worker_lost=True)
def send_batches_task(self: Task, campaign_id: str, numbers: list[int], tries: int = 0) -> dict[str, Any]:
    """Send batches ``numbers`` of campaign ``campaign_id`` concurrently; the result says what each did.

    A batch that must wait (rate limit, backoff, a lease held elsewhere) is queued again alone with
    a countdown; one that hit Redis errors is retried in 2 s; one that raised anything else is
    retried ``UNEXPECTED_RETRIES`` times, then this task fails loudly (after queueing the rest).
    """
    gate = pump()
    futures = gate.map(lambda n: send_batch(sender(), campaign_id, int(n)), numbers)
    follow_ons: list[int] = []
    summaries: list[dict[str, Any]] = []
    broken: Exception | None = None
    for n, future in zip(numbers, futures, strict=True):
        try:
            outcome = future.result()
        except redis.exceptions.RedisError as exc:
            # Redis is away: nothing was recorded, and the batch's claim (if any) expires with its
            # lease, after which the retry reconciles. Keep trying; the store is the source of truth.
            send_batches_task.apply_async((campaign_id, [n], tries), countdown=2.0)
            summaries.append({"batch": n, "action": "retry", "error": str(exc)[:200]})
            continue
        except Exception as exc:  # a bug must not silently strand a batch: retry a few times, then fail
            summaries.append({"batch": n, "action": "error", "error": repr(exc)[:200]})
            if tries >= UNEXPECTED_RETRIES:
                broken = exc
            else:
                send_batches_task.apply_async((campaign_id, [n], tries + 1), countdown=min(60.0, 2.0 ** tries))
            continue
        follow_ons += outcome.enqueue
        summaries.append(outcome.summary)
        retry_in = _settle(campaign_id, outcome)
        if retry_in is not None:
            send_batches_task.apply_async((campaign_id, [n], tries), countdown=retry_in)
    enqueue_batches(campaign_id, follow_ons)
    if broken is not None:
        raise broken
    return {"campaign": campaign_id, "in_flight": gate.limit, "latency_ms": round(gate.latency_s * 1000, 1),
            "batches": summaries}


@app.task(name=SEND_BATCH, bind=True, max_retries=None, acks_late=True, reject_on_worker_lost=True)
def send_batch_task(self: Task, campaign_id: str, batch: int) -> dict[str, Any]:
    """Send batch ``batch`` of campaign ``campaign_id``; the result is a small summary for Flower."""
    s = sender()
    try:
        outcome = send_batch(s, campaign_id, int(batch))
    except redis.exceptions.RedisError as exc:
        raise self.retry(countdown=2.0, exc=exc) from exc
    except Exception as exc:  # a bug must not silently strand a batch: retry a few times, then fail loudly
        if self.request.retries >= UNEXPECTED_RETRIES:
            raise
        raise self.retry(countdown=min(60.0, 2.0 ** self.request.retries), exc=exc) from exc
    enqueue_batches(campaign_id, outcome.enqueue)
    retry_in = _settle(campaign_id, outcome)
    if retry_in is not None:
        raise self.retry(countdown=retry_in)
    return outcome.summary
