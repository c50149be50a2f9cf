"""Redis SIGKILLed and restarted from its append-only file in the middle of a campaign, and POSTs
slower than the lease with `resume` typed again and again: the campaign finishes by itself and no
clientId is accepted twice (issue 11, item 6). Real processes throughout."""

from __future__ import annotations

import os
import secrets
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from dispatcher.dev import services
from dispatcher.dev.services import Service, free_port, redis_reachable, redis_server_binary, spawn
from dispatcher.sending import campaigns
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
    wait_until,
)

pytestmark = pytest.mark.slow

#: What asking a Redis that is restarting raises.
RESTARTING = (redis.exceptions.RedisError, OSError)


class DurableRedis:
    """A private redis-server writing an append-only file (fsync every second), killable and restartable."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dispatcher-aof-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.service: Service | None = None

    def start(self) -> None:
        argv = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.dir), "--daemonize", "no"]
        self.service = spawn("redis", argv, self.url, log_dir=self.dir)
        services.wait_until(lambda: redis_reachable(self.url, 0.2), self.service, timeout_s=30)

    def kill(self) -> None:
        assert self.service is not None
        os.killpg(self.service.pid, signal.SIGKILL)
        self.service.process.wait(10)

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()


@pytest.fixture()
def durable_redis() -> Iterator[DurableRedis]:
    server = DurableRedis()
    server.start()
    yield server
    server.stop()


def harness_on(durable_redis: DurableRedis, sandbox: SandboxHandle, broker: str) -> Harness:
    settings = Settings.from_env(environ={}, env_file=None).with_overrides(
        instasent_token=SANDBOX_TOKEN, instasent_base_url=sandbox.url, redis_url=durable_redis.url,
        broker_url=broker, key_prefix="dsprestart", queue_name=f"dispatcher-test-{secrets.token_hex(4)}",
        rate_limit_per_min=600000, queue_window=8)
    return Harness(settings, redis.Redis.from_url(durable_redis.url), sandbox)


def worker_settings(h: Harness, **extra: str) -> dict[str, str]:
    env = {"CELERY_BROKER_URL": h.settings.effective_broker_url, "DISPATCHER_QUEUE": h.settings.queue_name,
           "DISPATCHER_WATCHDOG_EVERY": "1", "DISPATCHER_ALLOW_VOLATILE_REDIS": "0"}
    return {**env, **extra}


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_redis_killed_and_restarted_from_its_aof_mid_campaign_heals_by_itself_exactly_once(
        durable_redis: DurableRedis, start_own_sandbox: Callable[..., SandboxHandle], broker: str) -> None:
    if broker == "rabbitmq" and not rabbitmq_up():
        pytest.skip("no RabbitMQ on 127.0.0.1:5672")
    sandbox = start_own_sandbox("--no-enforce-unique-client-id", "--rate-limit", "0", "--latency-ms", "20")
    h = harness_on(durable_redis, sandbox, durable_redis.url if broker == "redis" else RABBITMQ)
    try:
        h.start_worker(concurrency=2, **worker_settings(h))
        h.start_worker(concurrency=2, **worker_settings(h))
        cid = h.submit(recipients(6000))
        wait_until(lambda: h.store.get(cid).counts["sent"] >= 1500, 120, "1,500 messages sent", 0.1, RESTARTING)
        durable_redis.kill()
        time.sleep(2)  # the fault: Redis stays down two seconds
        durable_redis.start()
        wait_until(lambda: finished(h.store.get(cid)), 240, "the campaign to finish by itself", 0.1, RESTARTING)
        info = h.store.get(cid)
        assert info.state == "completed", info
        assert_exactly_once(h, cid, info)
        assert info.counts["sent"] == 6000
    finally:
        h.stop()


def test_posts_slower_than_the_lease_with_resume_typed_again_and_again_send_nothing_twice(
        durable_redis: DurableRedis, start_own_sandbox: Callable[..., SandboxHandle]) -> None:
    sandbox = start_own_sandbox("--no-enforce-unique-client-id", "--rate-limit", "0")
    # A fifth of the POSTs are accepted, then answered only after 6 s: longer than the 4 s lease.
    sandbox.faults(timeout_rate=0.2, timeout_hold_s=6)
    h = harness_on(durable_redis, sandbox, durable_redis.url)
    try:
        for _ in range(2):
            h.start_worker(concurrency=2, **worker_settings(h, DISPATCHER_READ_TIMEOUT="10",
                                                            DISPATCHER_POST_DEADLINE="3"))
        cid = h.submit(recipients(2000))
        deadline = time.monotonic() + 240
        while not finished(info := h.store.get(cid)) and time.monotonic() < deadline:
            campaigns.resume(h.store, h.ops, h.enqueuer, cid)  # a person typing `resume`, again and again
            time.sleep(0.5)
        sandbox.faults(timeout_rate=0)
        info = h.wait(cid, finished, timeout_s=120)
        assert info.state == "completed", info
        assert_exactly_once(h, cid, info)
        assert info.counts["sent"] == 2000
    finally:
        h.stop()
