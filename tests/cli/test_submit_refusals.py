"""`submit` refuses a list that leaves nothing to send, as a user runs it: a subprocess, exit 2, one sentence."""

from __future__ import annotations

import csv
from pathlib import Path

import orjson
import pytest
import redis

from dispatcher.keys import Keys
from dispatcher.preflight.suppression import SuppressionList
from tests.helpers import SANDBOX_TOKEN, SandboxHandle, one_sentence_error, run

pytestmark = pytest.mark.slow


@pytest.fixture()
def env(redis_url: str, sandbox: SandboxHandle, redis_client: redis.Redis) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "INSTASENT_TOKEN": SANDBOX_TOKEN, "INSTASENT_BASE_URL": sandbox.url,
            "DISPATCHER_KEY_PREFIX": "dsptest", "DISPATCHER_RATE_LIMIT": "600000",
            "DISPATCHER_ALLOW_VOLATILE_REDIS": "1"}


def phones_csv(path: Path, phones: list[str]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["phone", "name"])
        writer.writerows([phone, f"N{i}"] for i, phone in enumerate(phones))
    return path


@pytest.mark.parametrize("as_json", [False, True])
def test_submit_refuses_a_list_with_no_valid_row_with_exit_2_and_the_reasons(
        env: dict[str, str], tmp_path: Path, as_json: bool) -> None:
    path = phones_csv(tmp_path / "bad.csv", ["12345", "not a phone", "3.4612E+10", "999"])
    result = run(env, "submit", str(path), "--text", "Hola", "--from", "ACME", "--country", "ES", "--no-hlr",
                 *(["--json"] if as_json else []))
    assert result.returncode == 2
    message = one_sentence_error(result)
    assert "no row of bad.csv can be sent" in message and "scientific notation" in message
    assert orjson.loads(run(env, "list", "--json").stdout) == []


def test_submit_refuses_a_list_whose_every_number_is_suppressed(
        env: dict[str, str], tmp_path: Path, redis_client: redis.Redis) -> None:
    SuppressionList(redis_client, Keys("dsptest")).add(["+34612345678", "+34612345679"])
    path = phones_csv(tmp_path / "optedout.csv", ["612345678", "+34 612 345 679"])
    result = run(env, "submit", str(path), "--text", "Hola", "--from", "ACME", "--country", "ES", "--no-hlr")
    assert result.returncode == 2 and "2 suppressed" in one_sentence_error(result)
    assert orjson.loads(run(env, "list", "--json").stdout) == []
