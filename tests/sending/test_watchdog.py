"""The watchdog re-drives stranded work; Redis durability is checked and data loss reported (issue 11, 1/4/c/d)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest
import redis

from dispatcher.dev.services import start_redis
from dispatcher.errors import ConfigurationError, InputError
from dispatcher.sending.attempt import send_batch
from dispatcher.sending.context import SendContext
from dispatcher.sending.durability import Epoch, check_persistence
from dispatcher.sending.outcome import Action
from dispatcher.sending.watchdog import Watchdog
from tests.helpers import plain_frame, wait_until


class Queue:
    def __init__(self) -> None:
        self.items: list[tuple[str, int]] = []

    def enqueue(self, campaign_id: str, numbers: Sequence[int]) -> None:
        self.items += [(campaign_id, n) for n in numbers]


def running_campaign(sender: SendContext, n: int = 500) -> str:
    campaign_id = sender.store.create("test", plain_frame(n), window=3)
    sender.ops.reserve(campaign_id)  # batches 0..2 reserved; their tasks were "lost"
    send_batch(sender, campaign_id, 0)  # the campaign runs; batch 0 done, batch 3 reserved
    return campaign_id


def test_a_sweep_redrives_reserved_batches_that_no_task_carries_once_the_campaign_is_quiet(sender: SendContext) -> None:
    campaign_id = running_campaign(sender)
    queue = Queue()
    dog = Watchdog(sender.store, sender.ops, queue, sender.settings)
    assert dog.sweep() is not None and queue.items == []  # still active: nothing is stranded yet
    later = time.time() + dog.stale_after_s + 1
    swept = dog.sweep(now=later)
    assert swept is not None and sorted(swept.redriven[campaign_id]) == [1, 2, 3]
    assert sorted(n for _, n in queue.items) == [1, 2, 3]
    assert sender.store.get(campaign_id).watchdog["batches"] == 3
    queue.items.clear()
    assert dog.sweep(now=later + 1) is not None and queue.items == []  # re-driven once per quiet period
    for _, n in [(campaign_id, 1), (campaign_id, 2), (campaign_id, 3), (campaign_id, 4)]:
        send_batch(sender, campaign_id, n)
    assert sender.store.get(campaign_id).counts["sent"] == 500


def test_a_batch_under_a_live_lease_is_not_redriven_but_one_whose_holder_died_is(sender: SendContext) -> None:
    campaign_id = running_campaign(sender, 300)
    assert sender.ops.claim(campaign_id, 1, lease_s=3600).claimed
    assert sender.ops.claim(campaign_id, 2, lease_s=0).claimed  # its worker died
    dog = Watchdog(sender.store, sender.ops, Queue(), sender.settings)
    info = sender.store.get(campaign_id)
    assert dog.stranded(info, time.time() + dog.stale_after_s + 1) == [2]


def test_only_one_sweep_runs_at_a_time(sender: SendContext) -> None:
    dog = Watchdog(sender.store, sender.ops, Queue(), sender.settings)
    sender.store.redis.set(sender.store.keys.watchdog_lock(), "another-worker")
    assert dog.sweep() is None
    sender.store.redis.delete(sender.store.keys.watchdog_lock())
    assert dog.sweep() is not None and sender.store.last_sweep() is not None


def test_a_sweep_releases_parked_batches_without_beat(sender: SendContext) -> None:
    campaign_id = running_campaign(sender)
    claim = sender.ops.claim(campaign_id, 1, lease_s=60)
    sender.ops.park(campaign_id, 1, time.time() - 1, unknown=False, token=claim.token)
    queue = Queue()
    swept = Watchdog(sender.store, sender.ops, queue, sender.settings).sweep()
    assert swept is not None and swept.released == 1 and (campaign_id, 1) in queue.items


def test_redis_losing_its_data_is_noticed_reported_and_never_a_silent_success(sender: SendContext) -> None:
    campaign_id = running_campaign(sender)
    dog = Watchdog(sender.store, sender.ops, Queue(), sender.settings)
    assert dog.sweep() is not None
    sender.store.redis.flushall()  # a restart without persistence
    swept = dog.sweep()
    assert swept is not None and swept.data_lost
    with pytest.raises(InputError, match="Redis lost its data"):
        sender.store.get(campaign_id)
    assert send_batch(sender, campaign_id, 1).action == Action.LOST


def test_orphan_keys_of_a_half_lost_campaign_give_a_sentence_not_a_key_error(sender: SendContext) -> None:
    campaign_id = running_campaign(sender)
    sender.store.redis.hdel(sender.store.keys.campaign(campaign_id), "id", "state")
    with pytest.raises(InputError, match="incomplete"):
        sender.store.get(campaign_id)
    assert all(info.id != campaign_id for info in sender.store.recent())


def test_a_first_look_at_an_empty_redis_is_not_a_loss(redis_client: redis.Redis, sender: SendContext) -> None:
    epoch = Epoch(redis_client, sender.store.keys)
    assert not epoch.check() and not epoch.check()
    assert Epoch(redis_client, sender.store.keys).check() is False


def test_a_redis_that_does_not_persist_is_refused_in_one_sentence_unless_allowed(
        redis_client: redis.Redis, sender: SendContext) -> None:
    with pytest.raises(ConfigurationError, match="DISPATCHER_ALLOW_VOLATILE_REDIS=1") as raised:
        check_persistence(redis_client, sender.settings)
    assert "\n" not in str(raised.value)
    check_persistence(redis_client, sender.settings.with_overrides(allow_volatile_redis=True))


def test_a_redis_with_an_append_only_file_is_accepted(sender: SendContext) -> None:
    service = start_redis()
    try:
        client = redis.Redis.from_url(service.url)
        client.config_set("appendonly", "yes")
        check_persistence(client, sender.settings)
        # Redis refuses SIGTERM while it writes its first AOF, so stop() would wait 10 s to SIGKILL it.
        wait_until(lambda: (i := client.info("persistence"))["aof_rewrite_in_progress"] == 0
                   == i["aof_rewrite_scheduled"], 10, "the first AOF to be written")
        client.close()
    finally:
        service.stop()


def test_a_sweep_takes_over_a_lock_taken_before_a_restart_or_failover(sender: SendContext) -> None:
    dog = Watchdog(sender.store, sender.ops, Queue(), sender.settings)
    sender.store.redis.set(sender.store.keys.watchdog_lock(), "an-older-era/0123456789abcdef", px=30_000)
    assert dog.sweep() is not None  # its holder's connection died with that server: no 30 s stall


def test_a_sweep_in_a_new_era_requeues_batches_at_once_quiet_or_not(sender: SendContext) -> None:
    campaign_id = running_campaign(sender)
    queue = Queue()
    dog = Watchdog(sender.store, sender.ops, queue, sender.settings)
    dog.sweep()
    assert (campaign_id, 1) not in queue.items  # the campaign moved a moment ago: its tasks may live
    dog.era = "the-era-before-a-failover"
    dog.sweep()
    assert (campaign_id, 1) in queue.items
