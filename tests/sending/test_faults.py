"""Faults between hosts (issue 23), through ``dispatcher.dev.faultproxy``: a worker 1 ms from Redis
and 200 ms from Instasent is cut off from Redis for twice its lease while it POSTs; the campaign
completes with every clientId accepted exactly once and none pending. Real processes."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from dispatcher.dev.faultproxy import FaultProxy
from dispatcher.settings import Settings
from tests.helpers import SANDBOX_TOKEN, Harness, SandboxHandle, assert_exactly_once, finished, recipients
from tests.helpers import wait_through_restarts as wait_for

pytestmark = pytest.mark.slow

#: The lease the workers hold a batch for (``DISPATCHER_BATCH_LEASE`` of ``worker_env``).
LEASE_S = 4.0


@pytest.fixture()
def redis_proxy(redis_url: str) -> Iterator[FaultProxy]:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    with FaultProxy("127.0.0.1", port) as proxy:
        yield proxy


def test_a_worker_cut_off_from_redis_for_twice_its_lease_mid_post_sends_nothing_twice(
        redis_url: str, redis_proxy: FaultProxy, start_own_sandbox: Callable[..., SandboxHandle]) -> None:
    sandbox = start_own_sandbox("--no-enforce-unique-client-id", "--rate-limit", "0", "--latency-ms", "200")
    settings = Settings.from_env(environ={}, env_file=None).with_overrides(
        instasent_token=SANDBOX_TOKEN, instasent_base_url=sandbox.url, redis_url=redis_url,
        key_prefix=f"dspfault{secrets.token_hex(2)}", queue_name=f"dispatcher-test-{secrets.token_hex(4)}",
        rate_limit_per_min=120, queue_window=8)  # 20 POSTs in 10 s: the cut falls mid-campaign
    h = Harness(settings, redis.Redis.from_url(redis_url), sandbox)
    redis_proxy.latency_s = 0.001
    common = {"DISPATCHER_QUEUE": settings.queue_name, "DISPATCHER_WATCHDOG_EVERY": "1",
              "CELERY_BROKER_URL": redis_url}
    try:
        # The first worker reaches Redis (the store, not the broker) through the proxy; the second directly.
        h.start_worker(concurrency=2, **common, REDIS_URL=f"redis://127.0.0.1:{redis_proxy.port}/0")
        h.start_worker(concurrency=2, **common)
        cid = h.submit(recipients(2000))
        wait_for(lambda: h.store.get(cid).counts["sent"] >= 500, 120, "500 messages sent")
        redis_proxy.cut()
        time.sleep(2 * LEASE_S)
        redis_proxy.heal()
        assert "Error" in h.workers[0].log_tail(400), "the cut never reached the proxied worker"
        wait_for(lambda: finished(h.store.get(cid)), 240, "the campaign to finish by itself")
        info = h.store.get(cid)
        assert info.state == "completed", info
        assert_exactly_once(h, cid, info)
        assert info.counts["sent"] == 2000
    finally:
        h.stop()
