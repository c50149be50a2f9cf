"""The long-lived things a process builds from its :class:`~dispatcher.settings.Settings`, in one place.

The CLI, the Celery workers, beat and the webhook receiver all get their Redis client, their
:class:`~dispatcher.keys.Keys` and the stores built on them from :class:`Resources`, so every
process uses the same timeouts and the same key prefix. Only the Celery enqueuer is not here: it
lives in ``tasks.enqueue``, because this package never imports Celery.

This is the one composition root: it may import every library floor (instasent, preflight,
sending, delivery), and only the fronts import it (``tests/test_layering.py``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import redis

from dispatcher.delivery.reports import DeliveryBook
from dispatcher.instasent.client import InstasentClient
from dispatcher.keys import Keys
from dispatcher.preflight.suppression import SuppressionList
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.context import SendContext
from dispatcher.sending.ratelimit import RateLimiter
from dispatcher.sending.schedules.store import ScheduleStore
from dispatcher.sending.store import CampaignStore
from dispatcher.settings import Settings

#: Seconds to wait for a TCP connection to Redis. A CLI user learns quickly that Redis is away; a
#: worker's task is retried.
REDIS_CONNECT_TIMEOUT_S = 5.0
#: Seconds to wait for any one Redis reply. Our Lua calls take milliseconds; a minute-long reply
#: means a stuck server, and the caller's error path (a task retry, an error sentence) is better.
REDIS_SOCKET_TIMEOUT_S = 30.0


def connect_redis(url: str, *, connect_timeout_s: float = REDIS_CONNECT_TIMEOUT_S,
                  timeout_s: float = REDIS_SOCKET_TIMEOUT_S, single_connection: bool = False) -> redis.Redis:
    """A pooled Redis client for ``url``; it connects on its first command, not here.

    ``single_connection`` keeps one connection for the client's commands instead of taking one
    from the pool per command (pipelines still use the pool): for a client used by one thread.

    Raises:
        ValueError: when ``url`` is not a Redis URL.
    """
    return redis.Redis.from_url(url, socket_connect_timeout=connect_timeout_s, socket_timeout=timeout_s,
                                single_connection_client=single_connection)


@dataclass(frozen=True)
class Resources:
    """One process's Redis client, key builder and the stores on them (each built on first use)."""

    settings: Settings
    redis: redis.Redis
    keys: Keys

    @classmethod
    def from_settings(cls, settings: Settings, single_connection: bool = False) -> Resources:
        """Build them for ``settings`` (nothing connects until the first Redis command).

        ``single_connection``: see :func:`connect_redis` (for resources one thread uses).
        """
        return cls(settings=settings, redis=connect_redis(settings.redis_url, single_connection=single_connection),
                   keys=Keys(settings.key_prefix))

    @functools.cached_property
    def store(self) -> CampaignStore:
        """Campaigns: settings, state, counters."""
        return CampaignStore(self.redis, self.keys)

    @functools.cached_property
    def ops(self) -> BatchOps:
        """Batches: claims, records, the queue window."""
        return BatchOps(self.redis, self.keys)

    @functools.cached_property
    def limiter(self) -> RateLimiter:
        """The rate limiter every worker shares."""
        return RateLimiter(self.redis, self.keys)

    @functools.cached_property
    def schedules(self) -> ScheduleStore:
        """Recurring campaigns and their firings."""
        return ScheduleStore(self.redis, self.keys)

    @functools.cached_property
    def deliveries(self) -> DeliveryBook:
        """Delivery reports, applied to the campaigns' records."""
        return DeliveryBook(self.redis, self.keys)

    @functools.cached_property
    def suppression(self) -> SuppressionList:
        """Numbers that must never receive a message."""
        return SuppressionList(self.redis, self.keys)

    def instasent(self) -> InstasentClient:
        """A new Instasent client for these settings; the caller closes it.

        Raises:
            ConfigurationError: when no API token is configured.
        """
        return InstasentClient.from_settings(self.settings)

    def send_context(self) -> SendContext:
        """What a worker needs to send batches, with an Instasent client of its own."""
        return SendContext(settings=self.settings, client=self.instasent(), store=self.store, ops=self.ops,
                      limiter=self.limiter)
