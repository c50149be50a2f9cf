"""Fair share of a lane: campaigns that send through one organization's bulk lane take its slots in
proportion to their weights (``--priority`` low 1, normal 2, high 4), across every worker, with one
broker queue.

How: the workers take tasks from the broker in order (FIFO) and the rate limiter hands out slots in
the order batches ask for them, so every batch in the system waits about as long as any other. A
campaign's throughput is then its queued batches divided by that common wait (Little's law): its
share of the lane is its share of the lane's queued batches. So each campaign's queue window (the
batches it keeps queued, ``window`` in its hash, which ``lua/reserve.lua`` fills as batches settle)
is set to its weight's share of what one campaign alone would keep (``window_base``, about 1.5 s of
the limit)::

    window = min(window_base, max(weight, round(window_base * weight / sum of the lane's weights)))

so the lane's whole queue stays about what the limit can use, whatever the number of campaigns,
and a small campaign submitted behind a large one waits behind at most that much.

Membership lives in one hash per lane (``Keys.fair_lane``: campaign id -> weight). A campaign joins
when it is created; :func:`rebalance` (run when a campaign is created, changes state or completes,
and by every watchdog sweep) recounts the lane's weights from the campaigns' own hashes, drops
those that ended, and writes the windows. A shrunk window takes effect as the campaign's queued
batches settle (nothing queued is taken back); a grown one at its next settled batch.

The share a campaign actually took is recorded cheaply: each worker process counts its bulk
requests per campaign in memory and adds them, with its other telemetry, to a hash per 10 s
(``Keys.bulk_share``) once per task; :func:`shares` reads the last minute of them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from dispatcher.errors import InputError
from dispatcher.keys import Keys
from dispatcher.schema.names import FINAL, State

#: Priority -> weight in the lane's fair share.
PRIORITIES: dict[str, int] = {"low": 1, "normal": 2, "high": 4}
#: Priority of a campaign submitted without one (and of campaigns stored before priorities).
DEFAULT_PRIORITY = "normal"
#: Width (s) of the buckets bulk requests are counted in.
SHARE_BUCKET_S = 10
#: Span (s) of the shares ``status`` shows.
SHARE_SPAN_S = 60
#: How long (s) a bucket is kept.
SHARE_TTL_S = 180
#: A campaign still queued (not yet claimed) counts in its lane this long after its creation: its
#: first batch normally claims it (running) within a second; one held behind a schedule's
#: running campaign stays queued and must not take a share it does not use.
QUEUED_COUNTS_S = 30.0


def parse_priority(value: str | None) -> str:
    """``value`` as a priority name (None: the default).

    Raises:
        InputError: for anything but low, normal or high, in one sentence.
    """
    if value is None or value == "":
        return DEFAULT_PRIORITY
    name = str(value).strip().lower()
    if name not in PRIORITIES:
        raise InputError(f"priority {value!r} is not one of low, normal or high.")
    return name


def weight(priority: str | None) -> int:
    """The weight of a stored priority (an unknown or missing one weighs as normal)."""
    return PRIORITIES.get(priority or DEFAULT_PRIORITY, PRIORITIES[DEFAULT_PRIORITY])


def fair_window(base: int, own_weight: int, lane_weight: int) -> int:
    """Batches a campaign of ``own_weight`` keeps queued in a lane whose sending campaigns weigh
    ``lane_weight`` in all (its own included), when alone it would keep ``base``.

    At least ``own_weight`` batches, so that even many small windows keep the weights' ratios, and
    never more than ``base`` (alone, a campaign keeps exactly ``base``).
    """
    lane_weight = max(lane_weight, own_weight, 1)
    return max(1, min(base, max(own_weight, int(base * own_weight / lane_weight + 0.5))))


def _text(value: bytes | None) -> str:
    return value.decode() if value else ""


def _counts(state: str, created_at: float, now: float, queued: int = 1) -> bool:
    """Whether a member in ``state`` with ``queued`` batches in the queue (reserved, not settled,
    not parked) takes part in its lane's share now: a running one whose every batch waits for its
    send window does not."""
    if state == State.RUNNING.value:
        return queued > 0
    return state == State.QUEUED.value and now - created_at < QUEUED_COUNTS_S


def _queued(enqueued: str, settled: str, parked: str) -> int:
    """Batches of a campaign in the queue, from its hash's counters, when some are parked for
    their send window (else 1: a campaign with none parked always takes part while it runs)."""
    if not int(parked or 0):
        return 1
    return int(enqueued or 0) - int(settled or 0) - int(parked or 0)


def join(redis: Any, keys: Keys, campaign_id: str) -> dict[str, int]:
    """Add the campaign to its organization's lane and rebalance that lane; returns its windows."""
    organization, priority = (_text(v) for v in redis.hmget(keys.campaign(campaign_id), "organization", "priority"))
    redis.hset(keys.fair_lane(organization), campaign_id, weight(priority))
    return rebalance(redis, keys, organization)


def rebalance_campaign(redis: Any, keys: Keys, campaign_id: str) -> dict[str, int]:
    """Rebalance the lane of ``campaign_id`` (after it changed state); returns the lane's windows."""
    return rebalance(redis, keys, _text(redis.hget(keys.campaign(campaign_id), "organization")))


def rebalance(redis: Any, keys: Keys, organization: str, now: float | None = None) -> dict[str, int]:
    """Set the queue window of every campaign sending in ``organization``'s lane from the weights;
    drop the members that ended, vanished or moved to another lane. Returns id -> window of the
    campaigns that take part."""
    now = time.time() if now is None else now
    lane = keys.fair_lane(organization)
    members = [m.decode() for m in redis.hkeys(lane)]
    if not members:
        return {}
    pipe = redis.pipeline(transaction=False)
    for campaign_id in members:
        pipe.hmget(keys.campaign(campaign_id), "state", "organization", "priority", "window", "window_base",
                   "created_at", "enqueued", "settled", "parked")
    rows = dict(zip(members, pipe.execute(), strict=True))
    final = {s.value for s in FINAL}
    gone: list[str] = []
    taking: dict[str, tuple[int, int, int]] = {}  # id -> (weight, base, current window)
    for campaign_id, raw in rows.items():
        state, org, priority, window, stored_base, created, enqueued, settled, parked = (_text(v) for v in raw)
        if not state or state in final or org != organization:
            gone.append(campaign_id)
        elif _counts(state, float(created or 0), now, _queued(enqueued, settled, parked)):
            current = int(window or 0)
            taking[campaign_id] = (weight(priority), int(stored_base or 0) or current, current)
    lane_weight = sum(w for w, _, _ in taking.values())
    windows = {cid: fair_window(base, w, lane_weight) for cid, (w, base, _) in taking.items()}
    pipe = redis.pipeline(transaction=False)
    for campaign_id, (_, base, current) in taking.items():
        if windows[campaign_id] != current:
            pipe.hset(keys.campaign(campaign_id), mapping={"window": windows[campaign_id], "window_base": base})
    if gone:
        pipe.hdel(lane, *gone)
    pipe.execute()
    return windows


def sweep(redis: Any, keys: Keys, campaigns: Iterable[tuple[str, str]]) -> int:
    """Make every sending campaign of ``campaigns`` (``(id, state)`` pairs) a member of its lane
    and rebalance every lane that has one (the watchdog's backstop for a missed event, a campaign
    stored before fair share, an organization written after creation). Returns the lanes rebalanced."""
    sending = [cid for cid, state in campaigns if state in (State.RUNNING.value, State.QUEUED.value)]
    if not sending:
        return 0
    pipe = redis.pipeline(transaction=False)
    for campaign_id in sending:
        pipe.hmget(keys.campaign(campaign_id), "organization", "priority")
    lanes: dict[str, dict[str, int]] = {}
    for campaign_id, (org, priority) in zip(sending, pipe.execute(), strict=True):
        lanes.setdefault(_text(org), {})[campaign_id] = weight(_text(priority))
    pipe = redis.pipeline(transaction=False)
    for organization, members in lanes.items():
        pipe.hset(keys.fair_lane(organization), mapping=members)
    pipe.execute()
    for organization in lanes:
        rebalance(redis, keys, organization)
    return len(lanes)


def record_requests(pipe: Any, keys: Keys, requests: Mapping[str, int], now: float | None = None) -> None:
    """Add bulk requests per campaign to this moment's share bucket, on ``pipe`` (the caller executes it)."""
    if not requests:
        return
    key = keys.bulk_share(int((time.time() if now is None else now) // SHARE_BUCKET_S))
    for campaign_id, n in requests.items():
        pipe.hincrby(key, campaign_id, n)
    pipe.expire(key, SHARE_TTL_S)


def recent_requests(redis: Any, keys: Keys, now: float | None = None) -> dict[str, int]:
    """Bulk requests per campaign over about the last :data:`SHARE_SPAN_S` seconds."""
    current = int((time.time() if now is None else now) // SHARE_BUCKET_S)
    pipe = redis.pipeline(transaction=False)
    for bucket in range(current - SHARE_SPAN_S // SHARE_BUCKET_S + 1, current + 1):
        pipe.hgetall(keys.bulk_share(bucket))
    totals: dict[str, int] = {}
    for bucket in pipe.execute():
        for campaign_id, n in bucket.items():
            totals[campaign_id.decode()] = totals.get(campaign_id.decode(), 0) + int(n)
    return totals


def share(redis: Any, keys: Keys, campaign_id: str, now: float | None = None) -> dict[str, Any]:
    """The campaign's fair share of its lane, as ``status --json`` shows it (``share``).

    ``fraction`` is its part of the lane's bulk requests over the last minute (None when the lane
    sent none); ``requests`` and ``lane_requests`` those counts; ``weight`` its weight and
    ``lane_weight`` the weights of the campaigns sending in the lane now; ``window`` the batches
    it keeps queued; ``span_s`` the span of the counts (s).
    """
    return shares(redis, keys, [campaign_id], now)[campaign_id]


def shares(redis: Any, keys: Keys, campaign_ids: Iterable[str], now: float | None = None) -> dict[str, dict[str, Any]]:
    """:func:`share` of each of ``campaign_ids``, with one read of the counts for all (a page of the API)."""
    now = time.time() if now is None else now
    wanted = list(dict.fromkeys(campaign_ids))
    counts = recent_requests(redis, keys, now)
    rows = _rows(redis, keys, [*wanted, *counts])
    lanes = {rows[cid][0] for cid in wanted}
    pipe = redis.pipeline(transaction=False)
    for organization in lanes:
        pipe.hkeys(keys.fair_lane(organization))
    members = {org: [m.decode() for m in found] for org, found in zip(lanes, pipe.execute(), strict=True)}
    rows.update(_rows(redis, keys, [m for found in members.values() for m in found if m not in rows]))
    lane_requests: dict[str, int] = {}
    for cid, n in counts.items():
        lane_requests[rows[cid][0]] = lane_requests.get(rows[cid][0], 0) + n
    answer = {}
    for cid in wanted:
        organization, priority, window, _, _, _ = rows[cid]
        lane_weight = sum(weight(rows[m][1]) for m in members[organization]
                          if rows[m][0] == organization and _counts(rows[m][3], rows[m][4], now, rows[m][5]))
        own, total = counts.get(cid, 0), lane_requests.get(organization, 0)
        answer[cid] = {"priority": priority or DEFAULT_PRIORITY, "weight": weight(priority),
                       "lane_weight": lane_weight, "fraction": round(own / total, 4) if total else None,
                       "requests": own, "lane_requests": total, "window": window, "span_s": SHARE_SPAN_S}
    return answer


def _rows(redis: Any, keys: Keys, campaign_ids: Iterable[str]) -> dict[str, tuple[str, str, int, str, float, int]]:
    """(organization, priority, window, state, created_at, batches queued) of each campaign (empty
    when it is gone)."""
    ids = list(dict.fromkeys(campaign_ids))
    pipe = redis.pipeline(transaction=False)
    for cid in ids:
        pipe.hmget(keys.campaign(cid), "organization", "priority", "window", "state", "created_at", "enqueued",
                   "settled", "parked")
    rows = {}
    for cid, raw in zip(ids, pipe.execute(), strict=True):
        org, priority, window, state, created, enqueued, settled, parked = (_text(v) for v in raw)
        rows[cid] = (org, priority, int(window or 0), state, float(created or 0), _queued(enqueued, settled, parked))
    return rows
