"""kombu's Redis transports (direct and Sentinel), kept alive when the broker dies under them.

kombu 5.7 closes a channel's connection pools before it gives back the channel's unacknowledged
messages. When the broker's connection has just died (Redis restarted, or failed over), giving
them back builds a new pool from a connection that is already torn down (``connection.client`` is
None), the ``AttributeError`` escapes as "Unrecoverable error", and the Celery worker exits: every
worker of a host at once, on one Redis restart (seen in ``tests/sending/test_redis_restart.py``).

A rejected (requeued) or acknowledged message meets the same dead connection. These subclasses,
registered as the transports of the Redis schemes (kombu's transport aliases), only skip what
cannot be done. Nothing is lost: the
messages stay in the broker's unacknowledged set, which kombu restores after the visibility
timeout, and the watchdog re-queues sooner every batch that nothing carries.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from kombu import transport as kombu_transport
from kombu.transport import redis as kombu_redis

logger = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS whose acks, rejects and give-backs survive a dead connection: each one that
    cannot be done leaves its message unacknowledged in the broker, where kombu restores it after
    the visibility timeout (a second delivery of a batch is harmless: its claim says it is done)."""

    def restore_unacked(self, client: Any = None) -> None:
        with _kept_unacknowledged("given back"):
            super().restore_unacked(client)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        with _kept_unacknowledged("requeued"):
            super().reject(delivery_tag, requeue=requeue)

    def ack(self, delivery_tag: Any) -> None:
        with _kept_unacknowledged("acknowledged"):
            super().ack(delivery_tag)


@contextlib.contextmanager
def _kept_unacknowledged(what: str) -> Iterator[None]:
    try:
        yield
    except AttributeError:  # kombu's symptom of a torn-down connection (module docstring)
        logger.warning("the broker connection was lost: a message could not be %s; it stays "
                       "unacknowledged in the broker and is delivered again later", what)


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


#: The class of each Redis URL scheme kombu knows (``redis+sentinel://`` becomes ``sentinel://``).
_CLASSES = {"redis": "Transport", "rediss": "Transport", "sentinel": "SentinelTransport"}


def transport_for(broker_url: str) -> str | None:
    """The transport these classes give a broker URL, as kombu names it (``module:Class``); None
    (kombu's own) for any other broker, RabbitMQ included."""
    name = _CLASSES.get(broker_url.partition("://")[0].lower())
    return f"{__name__}:{name}" if name else None


def register() -> None:
    """Make these the transports of the ``redis``, ``rediss`` and ``sentinel`` schemes in this
    process. Naming them in Celery's ``broker_transport`` would not be enough: when kombu
    reconnects, it switches to the next URL of its failover list and takes the transport from that
    URL's scheme again, so the second connection loss would meet kombu's own transport."""
    kombu_transport.TRANSPORT_ALIASES.update({scheme: f"{__name__}:{name}" for scheme, name in _CLASSES.items()})
