"""The Celery worker's Redis broker transport (tasks/broker.py): a connection that dies with
messages unacknowledged closes without the error that made kombu 5.7 exit the worker, and the
messages stay in the broker to be delivered again."""

from __future__ import annotations

import pytest
import redis
from kombu import Connection, Exchange, Queue
from kombu.transport import redis as kombu_redis

from tasks.broker import SentinelTransport, Transport, register, transport_for


def unacked_then_torn_down(redis_url: str, transport: type) -> Connection:
    """A connection holding one unacknowledged message, its transport torn down as kombu leaves it
    when the broker dies under it (no client to build a new pool from)."""
    connection = Connection(redis_url, transport=transport)
    queue = Queue("brokertest", Exchange("brokertest"), "brokertest")
    with connection.Producer() as producer:
        producer.publish({"batch": 1}, exchange=queue.exchange, routing_key="brokertest", declare=[queue])
    channel = connection.default_channel
    message = queue(channel).get(no_ack=False)
    assert message is not None
    channel._disconnect_pools()
    connection.transport.client = None
    return connection


def test_a_channel_closed_after_its_broker_died_with_a_message_in_progress_keeps_the_message(
        redis_client: redis.Redis, redis_url: str) -> None:
    connection = unacked_then_torn_down(redis_url, Transport)
    connection.default_channel.close()  # kombu's own transport raises AttributeError here
    assert redis_client.hlen("unacked") == 1  # still in the broker: restored after the visibility timeout


def test_kombus_own_transport_exits_on_the_same_close_so_the_subclass_is_still_needed(
        redis_client: redis.Redis, redis_url: str) -> None:
    connection = unacked_then_torn_down(redis_url, kombu_redis.Transport)
    with pytest.raises(AttributeError):
        connection.default_channel.close()


def test_redis_brokers_get_the_kept_alive_transports_and_rabbitmq_its_own() -> None:
    assert transport_for("redis://127.0.0.1:6379/0") == "tasks.broker:Transport"
    assert transport_for("rediss://h:6380/0") == "tasks.broker:Transport"
    assert transport_for("sentinel://h:26379/0;sentinel://g:26379/0") == "tasks.broker:SentinelTransport"
    assert transport_for("amqp://guest:guest@127.0.0.1:5672//") is None
    assert issubclass(SentinelTransport, kombu_redis.SentinelTransport)


def test_a_message_rejected_or_acknowledged_after_its_broker_died_stays_in_the_broker(
        redis_client: redis.Redis, redis_url: str) -> None:
    connection = unacked_then_torn_down(redis_url, Transport)
    channel = connection.default_channel
    (tag,) = list(channel.qos._delivered)
    channel.qos.reject(tag, requeue=True)  # kombu's own QoS raises AttributeError here
    channel.qos.ack(tag)
    assert redis_client.hlen("unacked") == 1


def test_once_registered_a_reconnection_to_the_next_url_keeps_the_kept_alive_transport(redis_url: str) -> None:
    """kombu takes the transport from the URL's scheme again when it switches URLs to reconnect."""
    register()
    connection = Connection(redis_url, transport=Transport)
    connection.switch(redis_url)
    assert isinstance(connection.transport, Transport)
    assert isinstance(Connection("sentinel://127.0.0.1:26379/0").transport, SentinelTransport)
