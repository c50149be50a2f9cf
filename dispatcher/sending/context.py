"""What a worker process needs to send batches, built once per process, and the lanes it uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from dispatcher.instasent.client import InstasentClient
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.ratelimit import Lane, RateLimiter
from dispatcher.sending.store import CampaignStore
from dispatcher.settings import Settings

#: Lane names of the endpoints a batch uses.
BULK_LANE = "sms_bulk"
LIST_LANE = "sms_list"


@dataclass
class SendContext:
    """Everything a worker process needs to send batches; built once per process."""

    settings: Settings
    client: InstasentClient
    store: CampaignStore
    ops: BatchOps
    limiter: RateLimiter
    #: Current Unix time in seconds; tests inject their own to check send windows and expiry.
    clock: Callable[[], float] = time.time

    @property
    def bulk_lane(self) -> Lane:
        return Lane(BULK_LANE, self.settings.rate_limit_per_min, self.settings.message_rate_per_s)

    @property
    def list_lane(self) -> Lane:
        return Lane(LIST_LANE, self.settings.rate_limit_per_min)
