"""Samples of each live campaign's counters, taken once a second, for the dashboard's charts and pace.

The ledger keeps outcomes, not times, so the console samples ``sent``, ``failed``, ``delivered``,
``undelivered`` and ``processed`` of every campaign that is sending (or changed in the last
minute) into a capped Redis list per campaign. Two consoles may run: a per-second marker lets one
of them take each second's samples. The charts cover the time a console was running.
"""

from __future__ import annotations

import time

import orjson

from dispatcher.schema.names import FINAL
from dispatcher.sending.pace import MAX_SAMPLES, lane_limit, settings_limit_per_s

# Re-exported: the console's modules and tests read the series from here.
from dispatcher.sending.pace import PER_REQUEST as PER_REQUEST
from dispatcher.sending.pace import pace_per_s as pace_per_s
from dispatcher.sending.pace import read_series as read_series
from dispatcher.sending.store import CampaignInfo, CampaignStore
from dispatcher.settings import Settings

#: Campaigns looked at per sampling tick (the newest ones).
SAMPLED_CAMPAIGNS = 100
#: A finished campaign is still sampled this many seconds after its last change, to catch the end.
SETTLE_S = 60.0


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


def pace_limit_per_s(settings: Settings, store: CampaignStore | None = None) -> float:
    """The ceiling in messages per second: the one the workers publish (with ``store``), else the
    configured one (see :func:`dispatcher.sending.pace.lane_limit`)."""
    if store is not None:
        return lane_limit(store, settings)[0]
    return settings_limit_per_s(settings)
