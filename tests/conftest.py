"""Shared fixtures: a private Redis server and a sandbox process for the whole session.

Both are real processes on loopback. Each test gets a Redis database flushed before it runs and a
sandbox whose state and faults are reset before it runs.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator

import pytest
import redis

from dispatcher.dev.services import Service, start_redis, start_sandbox
from dispatcher.instasent.client import InstasentClient
from dispatcher.keys import Keys
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.context import SendContext
from dispatcher.sending.ratelimit import RateLimiter
from dispatcher.sending.store import CampaignStore
from dispatcher.settings import Settings
from tests import forkserver
from tests.fakes import FakeInstasent

# Test modules import these from tests.helpers; tests/instasent's modules still import them from here.
from tests.helpers import SANDBOX_TOKEN, SandboxHandle
from tests.loopback import Handler, HandlerServer, loopback_client


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fresh-cli", action="store_true",
                     help="run every CLI command of the tests in a fresh interpreter instead of forking it "
                          "from tests.forkserver (slower; what a user runs)")


def pytest_configure(config: pytest.Config) -> None:
    forkserver.FRESH = bool(config.getoption("--fresh-cli"))


@pytest.hookimpl(trylast=True)  # after any hook that marks tests
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first (in their files' order), then the rest: with ``-n``, the long ones start
    while every worker is busy and the short ones fill the end, so no worker finishes long after the
    others. Every worker collects in the same order, as pytest-xdist requires."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    random.seed(1337)


@pytest.fixture(scope="session")
def redis_service() -> Iterator[Service]:
    service = start_redis()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def redis_url(redis_service: Service) -> str:
    return redis_service.url


@pytest.fixture()
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="session")
def sandbox_service() -> Iterator[Service]:
    service = start_sandbox("--rate-limit", "0", token=SANDBOX_TOKEN)
    yield service
    service.stop()


@pytest.fixture()
def sandbox(sandbox_service: Service) -> Iterator[SandboxHandle]:
    """The session's sandbox, reset to its defaults before the test."""
    handle = SandboxHandle(sandbox_service)
    handle.reset()
    yield handle
    handle.close()


@pytest.fixture()
def start_own_sandbox() -> Iterator[Callable[..., SandboxHandle]]:
    """Start a sandbox with the given CLI options, stopped after the test."""
    started: list[SandboxHandle] = []

    def start(*options: str) -> SandboxHandle:
        handle = SandboxHandle(start_sandbox(*options, token=SANDBOX_TOKEN))
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.close()
        handle.service.stop()


@pytest.fixture()
def settings(redis_url: str, sandbox: SandboxHandle) -> Settings:
    """Settings pointing at the private Redis and the session sandbox, with short timeouts."""
    return Settings.from_env(environ={}, env_file=None).with_overrides(
        instasent_token=SANDBOX_TOKEN,
        instasent_base_url=sandbox.url,
        redis_url=redis_url,
        key_prefix="dsptest",
        read_timeout_s=5.0,
        rate_limit_per_min=600000,
    )


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("INSTASENT_", "DISPATCHER_")) or name in {"REDIS_URL", "CELERY_BROKER_URL"}:
            monkeypatch.delenv(name, raising=False)


@pytest.fixture()
def fake() -> FakeInstasent:
    return FakeInstasent()


@pytest.fixture()
def serve() -> Iterator[Callable[[Handler], InstasentClient]]:
    """Start a :class:`~tests.loopback.HandlerServer` per handler; answers an Instasent client on it
    (the production HTTP path over a loopback socket). Servers and clients are closed after the test."""
    servers: list[HandlerServer] = []
    clients: list[InstasentClient] = []

    def start(handler: Handler) -> InstasentClient:
        servers.append(HandlerServer(handler))
        clients.append(loopback_client(servers[-1].url))
        return clients[-1]

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.close()


@pytest.fixture()
def sender(redis_client: redis.Redis, fake: FakeInstasent) -> Iterator[SendContext]:
    """A batch sender on real Redis whose Instasent is the scripted :class:`FakeInstasent`, served on a
    loopback socket (:mod:`tests.loopback`)."""
    server = HandlerServer(fake.handler)
    settings = Settings.from_env(environ={}, env_file=None).with_overrides(
        instasent_token="t", instasent_base_url=server.url, key_prefix="dsptest",
        rate_limit_per_min=10**6, retry_backoff_s=0.01, reconcile_delay_s=0.01, max_attempts=3,
        max_consecutive_failures=2)
    keys = Keys(settings.key_prefix)
    client = loopback_client(server.url)
    yield SendContext(settings=settings, client=client, store=CampaignStore(redis_client, keys),
                 ops=BatchOps(redis_client, keys), limiter=RateLimiter(redis_client, keys))
    client.close()
    server.close()
