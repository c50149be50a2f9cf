"""Campaign operations: submit, pause, resume, cancel.

The queue is reached through an :class:`~dispatcher.sending.enqueuer.Enqueuer` passed in (the Celery one lives in
``tasks.enqueue``), so this module, like the rest of ``dispatcher``, never imports Celery.
Fan-out is windowed: a campaign keeps at most ``queue_window`` batches queued, and each batch
that settles reserves the next ones (see ``dispatcher.sending.batches``), so a million-message campaign
never floods the broker and pause, cancel and other campaigns stay responsive.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from dispatcher.preflight.result import PreflightOptions, PreflightResult, check_budget
from dispatcher.sending import health
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.enqueuer import Enqueuer
from dispatcher.sending.lifecycle import BatchState, State
from dispatcher.sending.loading import progress
from dispatcher.sending.store import CampaignStore
from dispatcher.sending.windows import Window, zones_for
from dispatcher.settings import Settings


def submit(store: CampaignStore, ops: BatchOps, enqueuer: Enqueuer, settings: Settings, *, name: str,
           messages: pd.DataFrame, cost: float = 0.0, currency: str = "", options: dict[str, Any] | None = None,
           preflight: dict[str, Any] | None = None, rejects: Sequence[dict[str, Any]] = (),
           send_window: Window | None = None, expire_after_s: float | None = None,
           now: float | None = None, suppression_version: int | None = None) -> str:
    """Store a prepared campaign and queue its first window of batches; returns the campaign id.

    ``suppression_version`` is the suppression list's version the messages were checked against
    (``PreflightResult.suppression_version``); without it every batch checks the list.

    With a ``send_window``, messages are grouped by their numbers' time zones so that every batch
    is homogeneous; ``expire_after_s`` (seconds from now) turns what is unsent by then ``expired``.
    """
    zones = None
    if send_window is not None and len(messages):
        keys = [",".join(zones_for(to)) for to in messages["to"].tolist()]
        order = sorted(range(len(keys)), key=keys.__getitem__)  # stable: file order within a zone
        messages = messages.iloc[order].reset_index(drop=True)
        zones = [keys[i] for i in order]
    expires_at = (time.time() if now is None else now) + expire_after_s if expire_after_s else None
    campaign_id = store.create(name, messages, window=settings.effective_queue_window, cost=cost, currency=currency,
                       options=options, preflight=preflight, send_window=send_window, expires_at=expires_at,
                       zones=zones, suppression_version=suppression_version)
    store.store_rejects(campaign_id, rejects)
    enqueuer.enqueue(campaign_id, ops.reserve(campaign_id))
    return campaign_id


def submit_preflight(store: CampaignStore, ops: BatchOps, enqueuer: Enqueuer, settings: Settings, *,
                     result: PreflightResult, options: PreflightOptions, name: str,
                     send_window: Window | None = None, expire_after_s: float | None = None) -> str:
    """Submit what a whole-list preflight (``run_preflight``) accepted, after the same budget guard.

    No command takes this path any more (they stream: :func:`dispatcher.sending.loading.submit_file`);
    it stays as the whole-list baseline ``bench/bench_scale.py`` measures the streamed path against.

    Raises:
        BudgetExceeded: when the cost exceeds the balance or ``options.max_cost``.
    """
    check_budget(result, options.max_cost)
    recorded_options = {"file": result.file, "text": options.text, "text_column": options.text_column,
                        "sender": options.sender, "country": options.country, "hlr": options.hlr}
    return submit(store, ops, enqueuer, settings, name=name, messages=result.messages, cost=result.cost,
                  currency=result.currency, options=recorded_options,
                  preflight={k: v for k, v in result.to_json().items() if k not in ("rejects", "by_country")},
                  rejects=[r.to_json() for r in result.rejects] if result.rejects else [],
                  send_window=send_window, expire_after_s=expire_after_s,
                  suppression_version=result.suppression_version)


def status(store: CampaignStore, campaign_id: str) -> dict[str, Any]:
    """The ``status --json`` object of one campaign, with when its next send window opens (Unix s),
    the watchdog's last sweep, the workers alive, whether it waits for a worker none runs, and its
    last error (see ``health``) and, while its list still loads, ``loading`` (see
    :func:`dispatcher.sending.loading.progress`).

    Raises:
        UnknownItem: when no campaign has that id.
    """
    info = store.get(campaign_id)
    load = progress(store, campaign_id)
    return {**info.to_json(), "next_window_opens_at": store.next_window_opening(campaign_id),
            "last_sweep": store.last_sweep(), **health.campaign_health(store, info),
            "loading": load.to_json() if load else None}


def pause(store: CampaignStore, campaign_id: str, reason: str = "paused by user") -> str:
    """Pause a campaign: batches not yet claimed stay unsent until ``resume``. Returns the old state."""
    return store.transition(campaign_id, State.PAUSED, reason)


def resume(store: CampaignStore, ops: BatchOps, enqueuer: Enqueuer, campaign_id: str) -> list[int]:
    """Resume a paused or failed campaign, or recover one whose workers died.

    Re-queues every batch that was reserved and is not done (an extra task for a batch is
    harmless: the claim lets one through), then tops the window up. Safe to run twice.
    Returns the batch numbers queued.
    """
    info = store.get(campaign_id)
    if info.state != State.COMPLETED:
        store.transition(campaign_id, State.RUNNING, "")
    store.redis.hset(store.keys.campaign(campaign_id), "consec_fail", 0)
    numbers = list(range(info.enqueued))
    states = store.batch_states(campaign_id, numbers)
    open_batches = ops.reopen(campaign_id, [n for n, st in zip(numbers, states, strict=True) if st != BatchState.DONE])
    queued = open_batches + list(ops.reserve(campaign_id))
    enqueuer.enqueue(campaign_id, queued)
    return queued


def cancel(store: CampaignStore, ops: BatchOps, campaign_id: str, ttl_s: int) -> int:
    """Cancel a campaign: every message nobody is sending becomes ``cancelled``. Returns how many.

    A batch in flight finishes (its messages may already be with Instasent); a batch whose
    outcome is unknown is reconciled by its task and never resent.
    """
    store.transition(campaign_id, State.CANCELLED, "cancelled by user")
    cancelled = ops.cancel(campaign_id, range(store.get(campaign_id).batches))
    store.expire(campaign_id, ttl_s)
    return cancelled


def release_parked(ops: BatchOps, enqueuer: Enqueuer, now: float | None = None) -> int:
    """Queue every batch whose send window has opened (or whose campaign expired); returns how many.

    Called periodically (by the workers' watchdog, and ``dispatcher.release_windows`` on beat):
    batches never wait in the broker with a long countdown, which the Redis transport would
    redeliver after its visibility timeout. A batch leaves the parked set only once its task is
    published, so a failed publish leaves it there for the next call.
    """
    due = ops.due(time.time() if now is None else now)
    by_campaign: dict[str, list[int]] = {}
    for campaign_id, n in due:
        by_campaign.setdefault(campaign_id, []).append(n)
    for campaign_id, numbers in by_campaign.items():
        enqueuer.enqueue(campaign_id, numbers)
        ops.unpark([(campaign_id, n) for n in numbers])
    return len(due)
