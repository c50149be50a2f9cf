"""How fast campaigns move: the samples the console takes of each campaign's counters, the pace
they show, and the ceiling the workers send under (the limit they publish with their heartbeat,
else this process's own settings)."""

from __future__ import annotations

from typing import Any

import orjson

from dispatcher.sending.health import WorkerRegistry
from dispatcher.sending.store import CampaignStore
from dispatcher.settings import Settings

#: Messages per bulk request (the store's batch size), to turn a request rate into messages.
PER_REQUEST = 100
#: Samples kept per campaign (two hours at one a second); older ones are dropped.
MAX_SAMPLES = 7200


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


def limit_per_s(per_min: int, messages_per_s: float) -> float:
    """The ceiling in messages per second: the message rate, else full bulks at the request rate."""
    by_requests = per_min / 60 * PER_REQUEST
    return min(messages_per_s, by_requests) if messages_per_s else by_requests


def settings_limit_per_s(settings: Settings) -> float:
    """The ceiling this process's settings give (messages per second)."""
    return limit_per_s(settings.rate_limit_per_min, settings.message_rate_per_s)


def lane_limit(store: CampaignStore, settings: Settings) -> tuple[float, str]:
    """``(messages per second, source)``: the limit the running workers published (source
    ``workers``), else this process's settings (source ``settings``) when no worker runs."""
    published = WorkerRegistry(store.redis, store.keys).limits()
    if published is not None:
        return limit_per_s(*published), "workers"
    return settings_limit_per_s(settings), "settings"
