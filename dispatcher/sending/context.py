"""What a worker process needs to send batches, built once per process, and the lanes it uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from dispatcher.instasent.client import InstasentClient
from dispatcher.instasent.wire import SMS_BULK, SMS_LIST
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.ratelimit import Lane, RateLimiter
from dispatcher.sending.store import CampaignStore
from dispatcher.settings import Settings


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
        """The lane of ``POST /sms/bulk``, named as the endpoint it paces."""
        return Lane(SMS_BULK, self.settings.rate_limit_per_min, self.settings.message_rate_per_s)

    @property
    def list_lane(self) -> Lane:
        """The lane of ``GET /sms`` (the clientId searches of a reconciliation)."""
        return Lane(SMS_LIST, self.settings.rate_limit_per_min)
