"""Dispatch tasks. Each decodes ids, calls one function of ``dispatcher`` and decides retries.

``dispatcher.send_batches(campaign_id, numbers)`` is the unit of work: a group of up to
``tasks.enqueue.group_size`` batches (8 to 32) that the process's :class:`~dispatcher.sending.pump.Pump` sends
concurrently, each through :func:`~dispatcher.sending.attempt.send_batch`. One Celery message (and
one Flower row, whose result lists what each batch did) per group instead of per batch, and the
batches the group reserves are published as new groups. ``dispatcher.send_batch`` (one batch)
stays for tasks queued by an older version.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any, cast

import httpx
import redis
from celery import Task
from celery.exceptions import Reject, Retry

from dispatcher.instasent.client import InstasentClient
from dispatcher.instasent.wire import SMS_BULK
from dispatcher.resources import Resources
from dispatcher.schema.names import FINAL, State
from dispatcher.sending import fairshare
from dispatcher.sending.accounts import AccountBook
from dispatcher.sending.attempt import send_batch
from dispatcher.sending.context import SendContext
from dispatcher.sending.outcome import Action, BatchOutcome
from dispatcher.sending.pump import Pump, TimedClient, requests_per_s
from dispatcher.sending.telemetry import Telemetry
from dispatcher.sending.tenancy import AccountClients
from dispatcher.settings import Settings
from tasks.app import app
from tasks.enqueue import SEND_BATCH, SEND_BATCHES, CeleryEnqueuer

#: Retries of a batch that failed for an unexpected reason (a bug), before it is left failed.
UNEXPECTED_RETRIES = 8

_local = threading.local()
_shared_lock = threading.Lock()
#: (pid, pump, TLS context, telemetry) of this process: threads do not survive a fork, so a child
#: builds its own.
_shared: tuple[int, Pump, ssl.SSLContext, Telemetry] | None = None
#: Batches in flight per process, fixed by ``dispatcher worker --concurrency``; 0: from the limit.
fixed_in_flight = 0
log = logging.getLogger(__name__)


def _process_parts() -> tuple[Pump, ssl.SSLContext, Telemetry]:
    """The process's pump, the TLS context its HTTP clients share and its telemetry, built on first use."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared[0] != os.getpid():
            settings = Settings.from_env()
            # Its own Redis client (a pool): the threads' connections are each one thread's.
            resources = Resources.from_settings(settings)
            gate = Pump(requests_per_s(settings), fixed=fixed_in_flight)
            _shared = (os.getpid(), gate, httpx.create_ssl_context(), Telemetry(resources.redis, resources.keys))
        return _shared[1], _shared[2], _shared[3]


def telemetry() -> Telemetry:
    """The process's telemetry (flushed once per task)."""
    return _process_parts()[2]


def pump() -> Pump:
    """The process's pump, sized from the rate limit."""
    return _process_parts()[0]


def send_context() -> SendContext:
    """This thread's send context: its own Redis connection, HTTP client and limiter.

    One of each per thread, not one pool per process: a pool shared by dozens of threads costs a
    lock and a scan of every connection per request (httpcore) or per command (redis-py), and
    a thread sends one request at a time anyway. The TLS context (its certificates) is shared.
    """
    current: SendContext | None = getattr(_local, "context", None)
    if current is None:
        settings = Settings.from_env()
        resources = Resources.from_settings(settings, single_connection=True)
        http = _http_client(settings)
        # Other accounts' clients are made the same way, on first use, with their own token.
        accounts = AccountClients(AccountBook(resources.redis, resources.keys, resources.settings), http,
                                  _http_client)
        current = SendContext(settings=resources.settings, client=http, store=resources.store,
                              ops=resources.ops, limiter=resources.limiter, accounts=accounts)
        _local.context = current
    return current


def _http_client(settings: Settings) -> InstasentClient:
    """A thread's Instasent client for ``settings`` (an account's token and base URL), timed for the pump."""
    gate, tls, _ = _process_parts()
    # Two connections: one spare, so a request never waits for a slot behind a slow answer.
    http = cast(TimedClient, TimedClient.from_settings(settings, max_connections=2, verify=tls))
    http.on_round_trip = gate.observe
    http.on_answer(_count_bulk_answer)
    return http


def _lane_of(context: SendContext, campaign_id: str) -> str:
    """The organization whose lanes the campaign's batches take: each has its own place in the
    pump's gate, so a crowded lane never starves another. Redis away: the shared place (each
    batch then meets the error itself and is retried)."""
    try:
        return context.accounts.campaign(campaign_id)[1] if context.accounts is not None else ""
    except redis.exceptions.RedisError:
        return ""


def _count_bulk_answer(endpoint: str, status: int) -> None:
    """Count a bulk answer in the process's telemetry."""
    if endpoint == SMS_BULK:
        telemetry().bulk_answered(status)


def timed_send(context: SendContext, campaign_id: str, batch: int) -> BatchOutcome:
    """``send_batch``, with its duration and slot waits added to the worker's telemetry (the
    task that called it flushes the telemetry)."""
    counts = telemetry()
    started, waited = time.monotonic(), context.limiter.waited_s
    outcome: BatchOutcome | None = None
    try:
        outcome = send_batch(context, campaign_id, batch)
        return outcome
    finally:
        counts.waited(context.limiter.waited_s - waited)
        # Only real attempts (a sent batch's action is DONE too; "already done" has no attempt number).
        if outcome is None or "attempt" in outcome.summary:
            counts.batch_done(time.monotonic() - started)
        if outcome is not None:
            counts.requests_made(campaign_id, outcome.requests)


def _send_one(campaign_id: str, batch: int) -> BatchOutcome:
    return timed_send(send_context(), campaign_id, batch)


def _settle(context: SendContext, campaign_id: str, outcome: BatchOutcome) -> float | None:
    """Side effects of one batch's outcome; returns the seconds after which to retry it, or None."""
    if outcome.action not in (Action.SKIP, Action.BUSY) and outcome.campaign_state in FINAL:
        # This call settled the campaign's last batch: start the TTL of all its keys (once, not per task).
        context.store.expire(campaign_id, context.settings.campaign_ttl_s)
        # It no longer takes part in its lane's share: the others' windows grow at once.
        fairshare.rebalance_campaign(context.store.redis, context.store.keys, campaign_id)
    if outcome.retry_in is not None and outcome.campaign_state not in (State.PAUSED, State.FAILED):
        return max(0.05, outcome.retry_in)
    return None


class CampaignLost(Exception):
    """The campaign of a task vanished from Redis without expiring: Redis lost data."""


def _lost(campaign_id: str) -> CampaignLost:
    # Not a success: the task fails because its campaign is gone (`dispatcher status` says why).
    return CampaignLost(f"campaign {campaign_id} is no longer in Redis although it never expired: "
                        "Redis lost data; `dispatcher status` reports it.")


@app.task(name=SEND_BATCHES, bind=True, acks_late=True, reject_on_worker_lost=True)
def send_batches_task(self: Task, campaign_id: str, numbers: list[int], tries: int = 0) -> dict[str, Any]:
    """Send batches ``numbers`` of campaign ``campaign_id`` concurrently; the result says what each did.

    A batch that must wait (rate limit, backoff, a lease held elsewhere) is queued again alone with
    a countdown; one that hit a Redis error is retried in 2 s; one that raised anything else is
    retried ``UNEXPECTED_RETRIES`` times, then this task fails loudly (after queueing the rest).
    Every follow-up is published before the task ends; if the broker refuses one, the task is
    requeued instead of acknowledged (its done batches then re-publish what they reserved).
    """
    gate = pump()
    context = send_context()
    enqueuer = CeleryEnqueuer(context.settings)
    futures = gate.map(lambda n: _send_one(campaign_id, int(n)), numbers, key=campaign_id,
                       lane=_lane_of(context, campaign_id))
    follow_ons: list[int] = []
    #: (batch numbers, countdown, tries) of the batches queued again alone.
    again: list[tuple[list[int], float, int]] = []
    results: list[dict[str, Any]] = []
    broken: Exception | None = None
    for n, future in zip(numbers, futures, strict=True):
        try:
            outcome = future.result()
        except redis.exceptions.RedisError as exc:
            # Redis is away: nothing was recorded, and the batch's claim (if any) expires with its
            # lease, after which the retry reconciles. Keep trying; the store is the source of truth.
            again.append(([n], 2.0, tries))
            results.append({"action": "retry", "batch": n, "error": type(exc).__name__})
            continue
        except Exception as exc:  # a bug must not silently strand a batch: retry a few times, then fail
            results.append({"action": "error", "batch": n, "error": type(exc).__name__})
            if tries >= UNEXPECTED_RETRIES:
                broken = exc
            else:
                again.append(([n], min(60.0, 2.0 ** tries), tries + 1))
            continue
        if outcome.action == Action.LOST:
            broken = broken or _lost(campaign_id)
        follow_ons += outcome.enqueue
        results.append(flower_summary(campaign_id, outcome, with_campaign=False))
        retry_in = _settle(context, campaign_id, outcome)
        if retry_in is not None:
            again.append(([n], retry_in, tries))
    telemetry().flush()
    _publish(lambda: enqueuer.enqueue(campaign_id, follow_ons))
    for batch, countdown, batch_tries in again:
        _publish(partial(enqueuer.enqueue, campaign_id, batch, countdown=countdown, tries=batch_tries))
    if broken is not None:
        raise broken
    actions = Counter(str(r["action"]) for r in results)
    return {"action": ", ".join(f"{a} {k}" for a, k in actions.most_common()), "campaign": campaign_id,
            "in_flight": gate.limit, "latency_ms": round(gate.latency_s * 1000, 1), "batches": results}


@app.task(name=SEND_BATCH, bind=True, max_retries=None, acks_late=True, reject_on_worker_lost=True)
def send_batch_task(self: Task, campaign_id: str, batch: int) -> dict[str, Any]:
    """Send batch ``batch`` of campaign ``campaign_id`` (a task queued by an older version)."""
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
        raise _lost(campaign_id)
    telemetry().flush()
    _publish(lambda: CeleryEnqueuer(s.settings).enqueue(campaign_id, outcome.enqueue))
    retry_in = _settle(s, campaign_id, outcome)
    if retry_in is not None:
        _publish(partial(self.retry, countdown=retry_in))
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


def flower_summary(campaign_id: str, outcome: BatchOutcome, with_campaign: bool = True) -> dict[str, Any]:
    """A batch's result as Flower shows it: what happened and the counts that are not zero first,
    then the batch, the attempt and the campaign (Flower cuts long results off on the right)."""
    tail = ("batch", "attempt")
    counts = {k: v for k, v in outcome.summary.items() if k not in tail and k != "action" and v not in (0, "", None)}
    summary = {"action": outcome.summary.get("action", outcome.action), **counts,
               **{k: outcome.summary[k] for k in tail if k in outcome.summary}}
    if with_campaign:
        summary["campaign"] = campaign_id
    return summary
