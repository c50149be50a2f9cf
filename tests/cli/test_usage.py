"""Usage errors and the getting-started helpers, as a user types them."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from dispatcher.dev.services import start_sandbox
from tests.helpers import SANDBOX_TOKEN, SandboxHandle, run


@pytest.fixture()
def env(redis_url: str, redis_client: redis.Redis) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "DISPATCHER_KEY_PREFIX": "dsptest"}


def test_a_mistyped_command_shows_the_usage_and_exits_2(env: dict[str, str]) -> None:
    result = run(env, "nosuch")
    assert result.returncode == 2
    assert "Usage:" in result.stderr and "No such command 'nosuch'" in result.stderr
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr


def test_a_mistyped_option_shows_the_usage_of_its_command_and_exits_2(env: dict[str, str]) -> None:
    result = run(env, "submit", "--bogus")
    assert result.returncode == 2
    assert "Usage: dispatcher submit" in result.stderr and "No such option: --bogus" in result.stderr
    assert "unexpected" not in result.stderr and "DISPATCHER_DEBUG" not in result.stderr


def test_a_missing_argument_is_a_usage_error(env: dict[str, str]) -> None:
    result = run(env, "status")
    assert result.returncode == 2
    assert "Missing argument" in result.stderr and "unexpected" not in result.stderr


def test_version_prints_the_installed_version(env: dict[str, str]) -> None:
    import dispatcher

    result = run(env, "--version")
    assert result.returncode == 0 and result.stdout.strip() == f"dispatcher {dispatcher.__version__}"


@pytest.mark.slow
def test_the_sandbox_prints_the_exports_that_point_the_cli_at_it() -> None:
    service = start_sandbox()  # the default token, which the README documents
    try:
        log = service.log_tail(20)
        assert f"export INSTASENT_BASE_URL={service.url} INSTASENT_TOKEN=sandbox-token" in log
    finally:
        service.stop()


@pytest.mark.slow
def test_a_token_of_ones_own_is_not_printed_with_the_exports(
        start_own_sandbox: Callable[..., SandboxHandle]) -> None:
    handle = start_own_sandbox()
    log = handle.service.log_tail(20)
    assert f"export INSTASENT_BASE_URL={handle.url} INSTASENT_TOKEN=<the --token you gave>" in log
    assert SANDBOX_TOKEN not in log
