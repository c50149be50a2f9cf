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
from decimal import Decimal
from typing import Any

from dispatcher import money
from dispatcher.schema.names import FINAL, BatchState, State
from dispatcher.sending import explain, fairshare, health, ledger
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.enqueuer import Enqueuer
from dispatcher.sending.loading import progress
from dispatcher.sending.store import CampaignInfo, CampaignStore
from dispatcher.settings import Settings


def status(store: CampaignStore, campaign_id: str, settings: Settings | None = None) -> dict[str, Any]:
    """The ``status --json`` object of one campaign, with when its next send window opens (Unix s),
    the watchdog's last sweep, the workers alive, whether it waits for a worker none runs, and its
    last error (see ``health``), while its list still loads ``loading`` (see
    :func:`dispatcher.sending.loading.progress`), what it waits for and when it should finish
    (see :mod:`dispatcher.sending.explain`), its money as decimal strings (see :func:`money`), and
    while it sends its ``share`` of its lane (see :func:`dispatcher.sending.fairshare.share`).

    Raises:
        UnknownItem: when no campaign has that id.
    """
    info = store.get(campaign_id)
    load = progress(store, campaign_id)
    checked = health.campaign_health(store, info)
    waiting = explain.waiting_for(store, info, checked)
    finish = explain.estimated_finish(store, info, settings or Settings.from_env(), waiting)
    return {**info.to_json(), "next_window_opens_at": store.next_window_opening(campaign_id),
            "last_sweep": store.last_sweep(), **checked,
            "loading": load.to_json() if load else None, "waiting_for": waiting, "estimated_finish": finish,
            **costs(store, info), "share": lane_share(store, info)}


def lane_share(store: CampaignStore, info: CampaignInfo) -> dict[str, Any] | None:
    """The campaign's share of its lane while it is queued or running, else None."""
    return lane_shares(store, [info]).get(info.id)


def lane_shares(store: CampaignStore, infos: list[CampaignInfo]) -> dict[str, dict[str, Any]]:
    """Each queued or running campaign's share of its lane (see ``fairshare.share``), by id."""
    sending = [i.id for i in infos if i.state in (State.QUEUED, State.RUNNING)]
    return fairshare.shares(store.redis, store.keys, sending) if sending else {}


def listed(store: CampaignStore, info: CampaignInfo, workers: int | None = None,
           shares: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A campaign as ``GET /api/campaigns`` lists it: its ``status`` fields but the costly ones
    (no last error, no estimated finish: a page lists up to 200), with what it waits for.
    ``workers``: the live workers, counted once for a whole page; ``shares``: the page's
    :func:`lane_shares`, read once for it."""
    checked = health.campaign_health(store, info, with_error=False, workers=workers)
    return {**info.to_json(), **checked, "waiting_for": explain.waiting_for(store, info, checked),
            **costs(store, info, compute=False), "share": (shares or {}).get(info.id)}


def costs(store: CampaignStore, info: CampaignInfo, compute: bool = True) -> dict[str, Any]:
    """The campaign's money as decimal strings in its currency's exponent: ``cost`` and
    ``estimated_cost`` (the preflight's estimate), ``actual_cost`` (parts Instasent accepted x their
    price; None when not ``compute``d and not yet known), and ``currency_exponent``."""
    actual = actual_cost(store, info) if compute else cached_actual_cost(store, info, stale_ok=True)
    estimate = money.total(info.cost, info.currency)
    return {"cost": estimate, "estimated_cost": estimate, "preflight": money.as_strings(info.preflight, info.currency),
            "actual_cost": money.total(actual, info.currency) if actual is not None else None,
            "currency_exponent": money.exponent(info.currency)}


def cached_actual_cost(store: CampaignStore, info: CampaignInfo, stale_ok: bool = False) -> Decimal | None:
    """The actual cost last worked out for the campaign's present counters, or None (0 with
    nothing sent, which needs no reading). With ``stale_ok``, a value read for earlier counters of
    a campaign still sending is good for a while (see :func:`actual_cost`)."""
    if info.counts.get("sent", 0) == 0:
        return Decimal(0)
    raw = store.redis.hget(store.keys.campaign(info.id), "actual_cost")
    if raw is None:
        return None
    stamp, amount, at, took = [*raw.decode().split("|"), "0", "0"][:4]
    if stamp == _cost_stamp(info):
        return Decimal(amount)
    fresh_for = max(ACTUAL_COST_REFRESH_S, 20 * float(took or 0))
    if stale_ok and info.state not in FINAL and time.time() - float(at or 0) < fresh_for:
        return Decimal(amount)
    return None


#: Seconds an actual cost read while the campaign sends is shown before it is read again (longer
#: when a read takes long: a million messages take seconds, and a page asks every two).
ACTUAL_COST_REFRESH_S = 15.0


def actual_cost(store: CampaignStore, info: CampaignInfo) -> Decimal:
    """Parts Instasent accepted (messages recorded ``sent``) times their price, summed in Decimal.

    Reads every batch, then answers from the value kept in the campaign's hash (``actual_cost``,
    stamped with the counts it was read at): exact once the campaign is final; while it sends, read
    again at most every :data:`ACTUAL_COST_REFRESH_S` seconds (or 20 times a read's duration).
    """
    cached = cached_actual_cost(store, info, stale_ok=True)
    if cached is not None:
        return cached
    started = time.monotonic()
    amount = Decimal(0)
    for _, messages, records, _ in store.iter_raw_batches(info.id, 200):
        for i, price in enumerate(messages.price):
            raw = records.get(str(i).encode())
            if raw is not None and ledger.fields(raw)[0] == "sent":
                amount += money.dec(price)
    took = time.monotonic() - started
    store.redis.hset(store.keys.campaign(info.id), "actual_cost",
                     f"{_cost_stamp(info)}|{amount}|{time.time()}|{took:.3f}")
    return amount


def _cost_stamp(info: CampaignInfo) -> str:
    return f"{info.counts.get('sent', 0)}:{info.total}"


def pause(store: CampaignStore, campaign_id: str, reason: str = "paused by user", by: str = "") -> str:
    """Pause a campaign: batches not yet claimed stay unsent until ``resume``. Returns the old state.
    ``by`` (a token's name, ``command line``) is kept on the campaign's timeline."""
    old = store.transition(campaign_id, State.PAUSED, reason)
    if old != State.PAUSED:
        store.add_event(campaign_id, "paused", by, reason)
    return old


def resume(store: CampaignStore, ops: BatchOps, enqueuer: Enqueuer, campaign_id: str, by: str = "") -> list[int]:
    """Resume a paused or failed campaign, or recover one whose workers died.

    Re-queues every batch that was reserved and is not done (an extra task for a batch is
    harmless: the claim lets one through), then tops the window up. Safe to run twice.
    Returns the batch numbers queued.
    """
    info = store.get(campaign_id)
    if info.state != State.COMPLETED:
        store.transition(campaign_id, State.RUNNING, "")
        if info.state in (State.PAUSED, State.FAILED):
            store.add_event(campaign_id, "resumed", by)
    store.redis.hset(store.keys.campaign(campaign_id), "consec_fail", 0)
    numbers = list(range(info.enqueued))
    states = store.batch_states(campaign_id, numbers)
    open_batches = ops.reopen(campaign_id, [n for n, st in zip(numbers, states, strict=True) if st != BatchState.DONE])
    queued = open_batches + list(ops.reserve(campaign_id))
    enqueuer.enqueue(campaign_id, queued)
    return queued


def cancel(store: CampaignStore, ops: BatchOps, campaign_id: str, ttl_s: int, by: str = "") -> int:
    """Cancel a campaign: every message nobody is sending becomes ``cancelled``. Returns how many.

    A batch in flight finishes (its messages may already be with Instasent); a batch whose
    outcome is unknown is reconciled by its task and never resent.
    """
    old = store.transition(campaign_id, State.CANCELLED, "cancelled by user")
    if old != State.CANCELLED:
        store.add_event(campaign_id, "cancelled", by)
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
