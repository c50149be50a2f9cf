"""Campaign operations: status, pause, resume, cancel, and releasing batches whose window opened. A
campaign is created by :func:`dispatcher.sending.submission.submit`.

The queue is reached through an :class:`~dispatcher.sending.enqueuer.Enqueuer` passed in (the
Celery one lives in ``tasks.enqueue``), so this module, like the rest of ``dispatcher``, never
imports Celery.
Fan-out is windowed: a campaign keeps at most ``queue_window`` batches queued, and each batch
that settles reserves the next ones (see ``dispatcher.sending.batches``), so a million-message campaign
never floods the broker and pause, cancel and other campaigns stay responsive.
"""

from __future__ import annotations

import time
from typing import Any

from dispatcher.schema.names import BatchState, State
from dispatcher.sending import health
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.enqueuer import Enqueuer
from dispatcher.sending.loading import progress
from dispatcher.sending.store import CampaignStore


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
