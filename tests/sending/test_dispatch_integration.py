"""Campaigns dispatched by real Celery worker processes, through real Redis, to the sandbox over HTTP."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator

import kombu
import pytest
import redis

from dispatcher.sending import campaigns
from dispatcher.settings import Settings
from tasks.enqueue import CeleryEnqueuer
from tests.helpers import (
    Harness,
    SandboxHandle,
    assert_exactly_once,
    finished,
    over_the_limit,
    rabbitmq_up,
    recipients,
)

pytestmark = pytest.mark.slow


@pytest.fixture()
def harness(settings: Settings, redis_client: redis.Redis, sandbox: SandboxHandle) -> Iterator[Harness]:
    h = Harness(settings.with_overrides(queue_window=8), redis_client, sandbox)
    yield h
    h.stop()


def test_a_campaign_of_thousands_completes_with_counters_equal_to_the_sandbox(harness: Harness) -> None:
    harness.start_worker()
    cid = harness.submit(recipients(3000))
    info = harness.wait(cid, finished)
    assert info.state == "completed"
    assert info.counts["sent"] == 3000
    assert_exactly_once(harness, cid, info)
    assert harness.sandbox.stats()["accepted"] == 3000


def test_two_workers_together_never_exceed_the_configured_rate(harness: Harness) -> None:
    per_minute = 600  # 10 bulk requests per second
    harness.settings = harness.settings.with_overrides(rate_limit_per_min=per_minute)
    harness.start_worker(concurrency=1)
    harness.start_worker(concurrency=1)
    cid = harness.submit(recipients(6000))
    info = harness.wait(cid, finished)
    assert info.state == "completed"
    log = [r for r in harness.sandbox.http.get("/_sandbox/requests").json()["requests"]
           if r["endpoint"] == "POST /sms/bulk"]
    stamps = sorted(r["t"] for r in log)
    assert len(stamps) == 60
    worst = max(sum(1 for t in stamps if s <= t < s + 1.0) for s in stamps)
    assert worst <= per_minute / 60 + 1
    # Every window, up to 60 s, holds at most the limit's share of it. The sandbox stamps a request
    # when it arrives, so each stamp is taken as uncertain by +-50 ms of transit: that allowance is
    # the old "+1 per second" at this rate, and the only one.
    assert over_the_limit([(t - 0.05, t + 0.05) for t in stamps], per_minute)[:5] == []
    assert max(sum(1 for t in stamps if s <= t < s + 60.0) for s in stamps) <= per_minute
    # ...and they reach the rate: 60 requests at 10/s take about 6 s, not much more.
    assert stamps[-1] - stamps[0] < 60 / (per_minute / 60) * 1.5


def test_faults_redeliveries_and_killed_workers_never_send_a_message_twice(harness: Harness) -> None:
    harness.sandbox.reset(enforce_unique_client_id=False)
    # 5 % throttling, so that over ~250 requests a 429 is all but certain (2 % missed it 0.6 % of runs).
    harness.sandbox.faults(error_rate=0.1, error_after_accept_rate=0.1, timeout_rate=0.1, throttle_rate=0.05,
                           timeout_hold_s=1.5, latency_ms=20)
    first = harness.start_worker()
    total = 20_000
    cid = harness.submit(recipients(total))
    for target in (total // 4, total // 2):
        harness.wait(cid, lambda i, target=target: i.counts["sent"] > target or finished(i), timeout_s=120)
        os.killpg(first.pid, signal.SIGKILL)
        first.process.wait(10)
        first = harness.start_worker()
        campaigns.resume(harness.store, harness.ops, harness.enqueuer, cid)
    harness.sandbox.faults(error_rate=0, error_after_accept_rate=0, timeout_rate=0, throttle_rate=0, latency_ms=0)
    info = harness.wait(cid, finished, timeout_s=240)
    if info.state == "paused":  # a run of failures may pause it; resume finishes it
        campaigns.resume(harness.store, harness.ops, harness.enqueuer, cid)
        info = harness.wait(cid, lambda i: i.state == "completed", timeout_s=120)
    assert info.state == "completed"
    assert_exactly_once(harness, cid, info)
    assert info.counts["sent"] + info.counts["failed"] == total
    stats = harness.sandbox.stats()
    # The faults really happened: answers lost after acceptance had to be reconciled, not resent.
    assert stats["errors_after_accept"] > 0 and stats["timeouts_injected"] > 0
    assert stats["errors_before_accept"] > 0 and stats["throttled_injected"] > 0
    print(f"faults survived: {stats}")


def test_with_client_id_uniqueness_on_a_resend_answered_already_used_counts_as_sent(harness: Harness) -> None:
    # Instasent enforces clientId uniqueness (the default), loses answers after accepting, and its
    # listing lags, so reconciling misses messages that were sent: they are POSTed again, answered
    # "clientId already used", and that answer must count as proof they were sent.
    harness.sandbox.faults(error_after_accept_rate=0.2, timeout_rate=0.1, timeout_hold_s=1.5, list_lag_s=3.0)
    harness.start_worker()
    total = 3000
    cid = harness.submit(recipients(total))
    info = harness.wait(cid, finished, timeout_s=180)
    assert info.state == "completed"
    stats = harness.sandbox.stats()
    assert stats["duplicate_submissions"] > 0  # the "already used" path really ran
    assert stats["duplicate_accepted"] == 0
    assert (info.counts["sent"], info.counts["rejected"], info.counts["failed"]) == (total, 0, 0)
    assert_exactly_once(harness, cid, info)
    assert stats["accepted"] == total


def test_pause_stops_sending_and_resume_finishes_the_campaign(harness: Harness) -> None:
    harness.sandbox.faults(latency_ms=30)
    harness.start_worker()
    cid = harness.submit(recipients(4000))
    harness.wait(cid, lambda i: i.counts["sent"] >= 500)
    campaigns.pause(harness.store, cid)
    sent_at_pause = harness.store.get(cid).counts["sent"]
    time.sleep(1.0)  # let in-flight batches land
    settled = harness.store.get(cid).counts["sent"]
    assert settled - sent_at_pause <= 2 * 100  # at most one batch per worker process
    time.sleep(0.5)
    assert harness.store.get(cid).counts["sent"] == settled
    campaigns.resume(harness.store, harness.ops, harness.enqueuer, cid)
    info = harness.wait(cid, finished)
    assert info.state == "completed"
    assert_exactly_once(harness, cid, info)


def test_cancel_leaves_every_unsent_message_cancelled(harness: Harness) -> None:
    harness.sandbox.faults(latency_ms=30)
    harness.start_worker()
    cid = harness.submit(recipients(4000))
    harness.wait(cid, lambda i: i.counts["sent"] >= 300)
    campaigns.cancel(harness.store, harness.ops, cid, ttl_s=3600)
    info = harness.wait(cid, lambda i: i.counts["pending"] == 0 and i.counts["unknown"] == 0)
    assert info.state == "cancelled"
    assert info.counts["cancelled"] > 0
    assert info.counts["sent"] + info.counts["cancelled"] == 4000
    assert info.counts["sent"] == len(harness.accepted_per_client_id(cid))


def test_running_out_of_balance_pauses_the_campaign_for_insufficient_funds(harness: Harness) -> None:
    harness.sandbox.reset(balance=20.0)  # about 440 messages at 0.045
    harness.start_worker()
    cid = harness.submit(recipients(2000))
    info = harness.wait(cid, lambda i: i.state == "paused")
    assert info.reason == "insufficient_funds"
    assert 0 < info.counts["sent"] < 2000
    harness.sandbox.http.post("/_sandbox/reset", json={"balance": 1000.0})  # top-up (clears the log too)
    campaigns.resume(harness.store, harness.ops, harness.enqueuer, cid)
    info = harness.wait(cid, finished)
    assert info.state == "completed" and info.counts["sent"] == 2000


@pytest.mark.skipif(not rabbitmq_up(), reason="no RabbitMQ on 127.0.0.1:5672")
def test_a_campaign_completes_with_rabbitmq_as_the_broker(harness: Harness) -> None:
    broker = "amqp://guest:guest@127.0.0.1:5672//"
    # A queue of its own: the RabbitMQ server outlives the test run (and may serve another one at
    # the same time), so a fixed name could hold tasks of campaigns this run's Redis never had.
    queue = f"dsptest-{uuid.uuid4().hex[:12]}:tasks"
    harness.settings = harness.settings.with_overrides(broker_url=broker, queue_name=queue)
    harness.enqueuer = CeleryEnqueuer(harness.settings)
    try:
        harness.start_worker(CELERY_BROKER_URL=broker, DISPATCHER_QUEUE=queue)
        cid = harness.submit(recipients(1000))
        info = harness.wait(cid, finished)
        assert info.state == "completed" and info.counts["sent"] == 1000
        assert_exactly_once(harness, cid, info)
    finally:
        harness.stop()
        with kombu.Connection(broker) as connection:
            connection.default_channel.queue_delete(queue)
