"""kombu's Redis transports (direct and Sentinel), kept alive when the broker dies under them.

kombu 5.7 closes a channel's connection pools before it gives back the channel's unacknowledged
messages. When the broker's connection has just died (Redis restarted, or failed over), giving
them back builds a new pool from a connection that is already torn down (``connection.client`` is
None), the ``AttributeError`` escapes as "Unrecoverable error", and the Celery worker exits: every
worker of a host at once, on one Redis restart (seen in ``tests/sending/test_redis_restart.py``).

These subclasses, chosen through Celery's ``broker_transport`` setting (kombu's public way to name
a transport class), only skip that give-back when it cannot be done. Nothing is lost: the
messages stay in the broker's unacknowledged set, which kombu restores after the visibility
timeout, and the watchdog re-queues sooner every batch that nothing carries.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis as kombu_redis

logger = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS whose give-back of unacknowledged messages survives a dead connection."""

    def restore_unacked(self, client: Any = None) -> None:
        try:
            super().restore_unacked(client)
        except AttributeError:
            logger.warning("the broker connection was lost with messages in progress; they stay "
                           "unacknowledged in the broker and are delivered again later")


class Channel(kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    """``redis://`` and ``rediss://`` brokers."""

    Channel = Channel


class SentinelChannel(kombu_redis.SentinelChannel):
    QoS = QoS


class SentinelTransport(kombu_redis.SentinelTransport):
    """``sentinel://`` brokers (what a ``redis+sentinel://`` URL becomes)."""

    Channel = SentinelChannel


def transport_for(broker_url: str) -> str | None:
    """The ``broker_transport`` for a broker URL: one of these classes for a Redis broker, None
    (the URL's own) for any other, RabbitMQ included."""
    scheme = broker_url.partition("://")[0].lower()
    if scheme in ("redis", "rediss"):
        return f"{__name__}:Transport"
    if scheme == "sentinel":
        return f"{__name__}:SentinelTransport"
    return None
