"""No POST before its claim is on the replicas (issue 23): with ``DISPATCHER_REDIS_MIN_REPLICAS``
set, each POST waits (``WAIT``) for that many replicas to acknowledge the batch's renewed claim;
with too few, the batch does not POST and is tried again, no attempt counted. Real Redis servers:
the session's (no replica) and, for the other side, a replica of a private master."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator

import pytest
import redis

from dispatcher.dev.services import (
    Service,
    free_port,
    redis_reachable,
    redis_server_binary,
    spawn,
    start_redis,
    wait_until,
)
from dispatcher.keys import Keys
from dispatcher.sending.attempt import NOT_REPLICATED_RETRY_S, send_batch
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.context import SendContext
from dispatcher.sending.durability import check_persistence
from dispatcher.sending.outcome import Action
from dispatcher.sending.ratelimit import RateLimiter
from dispatcher.sending.store import CampaignStore
from tests.fakes import FakeInstasent
from tests.sending.test_fencing import create, messages

pytestmark = pytest.mark.slow  # a Redis master and replicas of its own: seconds each


def with_replicas(sender: SendContext, client: redis.Redis, needed: int) -> SendContext:
    settings = sender.settings.with_overrides(redis_min_replicas=needed, redis_replica_wait_s=0.05)
    keys = Keys(settings.key_prefix)
    return dataclasses.replace(sender, settings=settings, store=CampaignStore(client, keys),
                               ops=BatchOps(client, keys), limiter=RateLimiter(client, keys))


@pytest.fixture()
def replicated() -> Iterator[redis.Redis]:
    """A private master with one replica attached; yields a client of the master."""
    master = start_redis()
    port = free_port()
    replica: Service = spawn("replica", [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no", "--dir", tempfile.mkdtemp(),
                                         "--replicaof", "127.0.0.1",
                                         master.url.rsplit(":", 1)[1].split("/")[0]], f"redis://127.0.0.1:{port}/0")
    client = redis.Redis.from_url(master.url)
    try:
        wait_until(lambda: redis_reachable(replica.url, 0.2) and client.info("replication")["connected_slaves"] == 1
                   and redis.Redis.from_url(replica.url).info("replication").get("master_link_status") == "up",
                   replica, timeout_s=30)
        yield client
    finally:
        replica.stop()
        master.stop()


def test_a_batch_whose_claim_no_replica_acknowledges_is_not_posted_and_is_retried(
        sender: SendContext, redis_client: redis.Redis, fake: FakeInstasent) -> None:
    context = with_replicas(sender, redis_client, needed=1)  # the session's Redis has no replica
    campaign_id = create(context, messages(5))
    outcome = send_batch(context, campaign_id, 0)
    assert outcome.action == Action.RETRY and outcome.retry_in == NOT_REPLICATED_RETRY_S
    assert fake.bulk_requests == 0 and not fake.posted
    assert context.store.get(campaign_id).counts["pending"] == 5
    # Once the replicas are not required, the same batch goes out once, with no attempt spent.
    plain = dataclasses.replace(context, settings=context.settings.with_overrides(redis_min_replicas=0))
    assert send_batch(plain, campaign_id, 0).action == Action.DONE
    assert set(fake.accepted.values()) == {1} and len(fake.accepted) == 5


def test_a_batch_whose_claim_a_replica_acknowledges_is_posted(
        sender: SendContext, replicated: redis.Redis, fake: FakeInstasent) -> None:
    context = with_replicas(sender, replicated, needed=1)
    campaign_id = create(context, messages(5))
    assert send_batch(context, campaign_id, 0).action == Action.DONE
    assert len(fake.accepted) == 5


def test_a_master_with_the_replicas_the_posts_wait_for_counts_as_durable(
        sender: SendContext, replicated: redis.Redis) -> None:
    replicated.config_set("appendonly", "no")
    check_persistence(replicated, sender.settings.with_overrides(redis_min_replicas=1))
