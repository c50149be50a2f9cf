"""Samples of each live campaign's counters, taken once a second, for the dashboard's charts and pace.

The ledger keeps outcomes, not times, so the console samples ``sent``, ``failed``, ``delivered``,
``undelivered`` and ``processed`` of every campaign that is sending (or changed in the last
minute) into a capped Redis list per campaign. Two consoles may run: a per-second marker lets one
of them take each second's samples. The charts cover the time a console was running.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from dispatcher.schema.names import FINAL
from dispatcher.sending.store import CampaignInfo, CampaignStore
from dispatcher.settings import Settings

#: Samples kept per campaign (two hours at one a second); older ones are dropped.
MAX_SAMPLES = 7200
#: Campaigns looked at per sampling tick (the newest ones).
SAMPLED_CAMPAIGNS = 100
#: A finished campaign is still sampled this many seconds after its last change, to catch the end.
SETTLE_S = 60.0
#: Messages per bulk request (the store's batch size), to turn a request rate into messages.
PER_REQUEST = 100


def _sample(info: CampaignInfo, now: float) -> list[float]:
    c = info.counts
    return [round(now, 3), c.get("sent", 0), c.get("failed", 0), info.delivery.get("delivered", 0),
            info.delivery.get("undelivered", 0), info.processed]


def take_samples(store: CampaignStore, ttl_s: int, now: float | None = None) -> int:
    """Append one sample to every campaign that is live or changed lately; returns how many.

    Returns 0 without sampling when another console already took this second's samples.
    """
    now = time.time() if now is None else now
    if not store.redis.set(store.keys.series_tick(int(now)), 1, nx=True, ex=5):
        return 0
    final = {s.value for s in FINAL}
    taken = 0
    pipe = store.redis.pipeline(transaction=False)
    for info in store.recent(SAMPLED_CAMPAIGNS):
        changed = max(info.updated_at or 0.0, info.finished_at or 0.0, info.created_at)
        if info.state in final and now - changed > SETTLE_S:
            continue
        key = store.keys.campaign_series(info.id)
        pipe.rpush(key, orjson.dumps(_sample(info, now)))
        pipe.ltrim(key, -MAX_SAMPLES, -1)
        pipe.expire(key, ttl_s)
        taken += 1
    pipe.execute()
    return taken


def read_series(store: CampaignStore, campaign_id: str, last: int = MAX_SAMPLES) -> list[list[float]]:
    """The newest ``last`` samples of a campaign, oldest first: ``[t, sent, failed, delivered,
    undelivered, processed]`` with ``t`` in Unix seconds."""
    raw = store.redis.lrange(store.keys.campaign_series(campaign_id), -last, -1)
    return [orjson.loads(r) for r in raw]


def pace_per_s(samples: list[Any]) -> float:
    """Messages settled per second over ``samples`` (0.0 with fewer than two)."""
    if len(samples) < 2:
        return 0.0
    first, last = samples[0], samples[-1]
    elapsed = float(last[0]) - float(first[0])
    return max(0.0, (float(last[5]) - float(first[5])) / elapsed) if elapsed > 0 else 0.0


def pace_limit_per_s(settings: Settings) -> float:
    """The configured ceiling in messages per second: the message rate, else full bulks at the request rate."""
    by_requests = settings.rate_limit_per_min / 60 * PER_REQUEST
    return min(settings.message_rate_per_s, by_requests) if settings.message_rate_per_s else by_requests
