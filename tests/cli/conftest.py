"""Fixtures shared by the CLI tests."""

from __future__ import annotations

import pytest
import redis

from tests.helpers import SANDBOX_TOKEN, SandboxHandle


@pytest.fixture()
def env(redis_url: str, sandbox: SandboxHandle, redis_client: redis.Redis) -> dict[str, str]:
    """The environment of a CLI run against the private Redis and the session sandbox (a flushed Redis)."""
    return {"REDIS_URL": redis_url, "INSTASENT_TOKEN": SANDBOX_TOKEN, "INSTASENT_BASE_URL": sandbox.url,
            "DISPATCHER_KEY_PREFIX": "dsptest", "DISPATCHER_RATE_LIMIT": "600000",
            "DISPATCHER_RETRY_BACKOFF": "0.05", "DISPATCHER_RECONCILE_DELAY": "0.2",
            "DISPATCHER_ALLOW_VOLATILE_REDIS": "1"}
