"""Redis that fails over (issue 23), with real processes: a master, two replicas and three
sentinels on loopback, the store and the broker both given the ``redis+sentinel://`` URL. The
master is SIGKILLed a third of the way into a campaign and comes back as a replica; the campaign
completes by itself with every clientId accepted exactly once. The same with RabbitMQ as the broker
(the store still on the sentinels), and with a failover every few seconds until the campaign ends.
The full-size run (30,000 messages at 1,200 requests/min, three failovers) runs with
``DISPATCHER_FULL_FAILOVER=1``."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from dispatcher.dev.ha import HighAvailability, start_ha
from dispatcher.keys import Keys
from dispatcher.resources import connect_redis
from dispatcher.sending.batches import BatchOps, ClaimKind
from dispatcher.sending.store import CampaignStore
from dispatcher.settings import Settings
from tests.helpers import (
    RABBITMQ,
    SANDBOX_TOKEN,
    Harness,
    SandboxHandle,
    assert_exactly_once,
    finished,
    rabbitmq_up,
    recipients,
)
from tests.helpers import wait_through_restarts as _wait_for

pytestmark = pytest.mark.slow


@pytest.fixture()
def ha() -> Iterator[HighAvailability]:
    with start_ha() as servers:
        yield servers


def harness_on(ha: HighAvailability, sandbox: SandboxHandle, rate_per_min: int, broker_url: str = "") -> Harness:
    """Settings on the sentinels (and on ``broker_url`` for the broker when given) with a private queue."""
    settings = Settings.from_env(environ={}, env_file=None).with_overrides(
        instasent_token=SANDBOX_TOKEN, instasent_base_url=sandbox.url, redis_url=ha.url(), broker_url=broker_url,
        key_prefix="dspha", queue_name=f"dispatcher-test-{secrets.token_hex(4)}",
        rate_limit_per_min=rate_per_min, queue_window=8, redis_min_replicas=1)
    return Harness(settings, connect_redis(ha.url()), sandbox)


def wait_for(h: Harness, check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """``helpers.wait_through_restarts``, with the workers' last log lines when it times out."""
    try:
        _wait_for(check, timeout_s, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n" + "\n".join(w.log_tail(30) for w in h.workers)) from None


def ha_worker_env(h: Harness) -> dict[str, str]:
    env = {"DISPATCHER_QUEUE": h.settings.queue_name, "DISPATCHER_WATCHDOG_EVERY": "1",
           "DISPATCHER_ALLOW_VOLATILE_REDIS": "0", "DISPATCHER_REDIS_MIN_REPLICAS": "1"}
    if h.settings.broker_url:
        env["CELERY_BROKER_URL"] = h.settings.broker_url
    return env


@contextlib.contextmanager
def two_workers(ha: HighAvailability, start_own_sandbox: Callable[..., SandboxHandle], rate_per_min: int,
                broker_url: str = "") -> Iterator[Harness]:
    """A sandbox that keeps every clientId it accepts (so a second send shows) 20 ms away, and two
    workers on the sentinels (and on ``broker_url`` when given), stopped at the end."""
    sandbox = start_own_sandbox("--no-enforce-unique-client-id", "--rate-limit", "0", "--latency-ms", "20")
    h = harness_on(ha, sandbox, rate_per_min=rate_per_min, broker_url=broker_url)
    try:
        for _ in range(2):
            h.start_worker(concurrency=2, **ha_worker_env(h))
        yield h
    finally:
        h.stop()


def completes_exactly_once(h: Harness, cid: str, messages: int) -> None:
    """Wait for the campaign to finish by itself; every clientId accepted once, none pending."""
    wait_for(h, lambda: finished(h.store.get(cid)), 300, "the campaign to finish by itself")
    info = h.store.get(cid)
    assert info.state == "completed", info
    assert_exactly_once(h, cid, info)
    assert info.counts["sent"] == messages


def run_through_failovers(ha: HighAvailability, h: Harness, messages: int, failovers: int,
                          every_sent: int, down_s: float) -> None:
    """Submit ``messages``; at each ``every_sent`` more sent, SIGKILL the master and bring it back
    ``down_s`` seconds later (as a replica); then wait for the campaign to finish by itself."""
    cid = h.submit(recipients(messages))
    for k in range(1, failovers + 1):
        wait_for(h, lambda k=k: h.store.get(cid).counts["sent"] >= k * every_sent, 60, f"{k * every_sent} sent")
        old = ha.kill_master()
        ha.wait_for_failover(old)
        time.sleep(max(0.0, down_s - 2))
        ha.restart(old)
    completes_exactly_once(h, cid, messages)


def test_the_master_killed_a_third_of_the_way_in_fails_over_and_the_campaign_completes_exactly_once(
        ha: HighAvailability, start_own_sandbox: Callable[..., SandboxHandle]) -> None:
    # 3,000 messages at 120 requests/min: a 15 s campaign, the Done-when's 30,000 at 1,200 scaled down.
    with two_workers(ha, start_own_sandbox, 120) as h:
        run_through_failovers(ha, h, messages=3000, failovers=1, every_sent=1000, down_s=10)


def run_through_timed_failovers(ha: HighAvailability, h: Harness, messages: int, failovers: int,
                                every_s: float, down_s: float) -> None:
    """Submit ``messages``; once the first are sent, SIGKILL the master every ``every_s`` seconds
    (``failovers`` times), each old master back ``down_s`` seconds after its kill, started as a
    replica of the new master and in sync before the next kill; then wait for the campaign to
    finish by itself."""
    cid = h.submit(recipients(messages))
    wait_for(h, lambda: h.store.get(cid).counts["sent"] >= 200, 60, "the first messages sent")
    for k in range(failovers):
        # Each failover must fall inside the campaign, or the test tests less than it says.
        assert not finished(_wait_for(lambda: h.store.get(cid), 30, "the campaign")), \
            f"the campaign ended before failover {k + 1} of {failovers}"
        started = time.monotonic()
        old = ha.kill_master()
        ha.wait_for_failover(old)
        time.sleep(max(0.0, down_s - (time.monotonic() - started)))
        ha.restart(old, as_replica=True)
        ha.wait_until_replica(old)  # the next kill must find every replica following
        if k < failovers - 1:
            time.sleep(max(0.0, every_s - (time.monotonic() - started)))
    completes_exactly_once(h, cid, messages)


@pytest.mark.skipif(not rabbitmq_up(), reason="no RabbitMQ on 127.0.0.1:5672")
def test_the_master_killed_a_third_of_the_way_in_with_rabbitmq_as_the_broker_completes_exactly_once(
        ha: HighAvailability, start_own_sandbox: Callable[..., SandboxHandle]) -> None:
    with two_workers(ha, start_own_sandbox, 120, broker_url=RABBITMQ) as h:
        run_through_failovers(ha, h, messages=3000, failovers=1, every_sent=1000, down_s=10)


@pytest.mark.skipif(not os.environ.get("DISPATCHER_FULL_FAILOVER"), reason="set DISPATCHER_FULL_FAILOVER=1: minutes")
@pytest.mark.skipif(not rabbitmq_up(), reason="no RabbitMQ on 127.0.0.1:5672")
def test_thirty_thousand_messages_with_rabbitmq_as_the_broker_and_the_master_killed_a_third_in_send_nothing_twice(
        ha: HighAvailability, start_own_sandbox: Callable[..., SandboxHandle]) -> None:
    with two_workers(ha, start_own_sandbox, 1200, broker_url=RABBITMQ) as h:
        run_through_failovers(ha, h, messages=30000, failovers=1, every_sent=10000, down_s=10)


def test_three_failovers_seconds_apart_during_one_campaign_send_nothing_twice(
        ha: HighAvailability, start_own_sandbox: Callable[..., SandboxHandle]) -> None:
    # The Done-when's failover every 20 s, scaled down: one every 6 s, each old master back after 3 s.
    # 3,000 messages at 120 requests/min is 15 s of sending; sending pauses about 10 s after each
    # kill, so the three kills, 6 s apart, all fall inside the campaign.
    with two_workers(ha, start_own_sandbox, 120) as h:
        run_through_timed_failovers(ha, h, messages=3000, failovers=3, every_s=6, down_s=3)


@pytest.mark.skipif(not os.environ.get("DISPATCHER_FULL_FAILOVER"), reason="set DISPATCHER_FULL_FAILOVER=1: minutes")
def test_failovers_every_twenty_seconds_until_the_campaign_ends_send_nothing_twice(
        ha: HighAvailability, start_own_sandbox: Callable[..., SandboxHandle]) -> None:
    with two_workers(ha, start_own_sandbox, 1200) as h:
        run_through_failovers(ha, h, messages=30000, failovers=3, every_sent=7500, down_s=10)


def test_a_promoted_replica_makes_a_claimed_batch_wait_a_lease_and_reconcile(ha: HighAvailability) -> None:
    """The era check of claim.lua after a promotion (no uptime involved: the replica has been up
    as long as the master)."""
    client = connect_redis(ha.url())
    keys = Keys(f"dspera{secrets.token_hex(2)}")
    store, ops = CampaignStore(client, keys), BatchOps(client, keys)
    cid = store.create("era", recipients(300), window=4)
    ops.reserve(cid)
    assert ops.claim(cid, 0, 3.0).kind == ClaimKind.SEND  # a claim, then the master dies
    assert client.wait(2, 2000) == 2
    old = ha.kill_master()
    ha.wait_for_failover(old)
    _wait_for(lambda: bool(client.ping()), 30, "the new master")
    first = ops.claim(cid, 1, 3.0)
    assert first.kind == ClaimKind.BUSY and 2.0 < first.wait_s <= 3.0  # a lease since the promotion
    time.sleep(first.wait_s + 0.1)
    claim = ops.claim(cid, 1, 3.0)
    assert claim.kind == ClaimKind.SEND and claim.must_reconcile  # reconciled before any send
    with pytest.raises(redis.exceptions.RedisError):
        old.client(0.2).ping()  # the old master is really gone
