"""`dispatcher submit` of a list that loads while it sends, killed mid-load, then resumed or cancelled."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
import redis

from dispatcher.dev.services import Service, start_worker
from tests.helpers import SANDBOX_TOKEN, SandboxHandle, json_of, run, wait_until

pytestmark = pytest.mark.slow

ROWS = 60_000


@pytest.fixture()
def env(redis_url: str, sandbox: SandboxHandle, redis_client: redis.Redis) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "INSTASENT_TOKEN": SANDBOX_TOKEN, "INSTASENT_BASE_URL": sandbox.url,
            "DISPATCHER_KEY_PREFIX": "dsptest", "DISPATCHER_RATE_LIMIT": "600000",
            "DISPATCHER_RETRY_BACKOFF": "0.05", "DISPATCHER_RECONCILE_DELAY": "0.2", "DISPATCHER_LOAD_LEASE": "1.5",
            "DISPATCHER_ALLOW_VOLATILE_REDIS": "1"}


@pytest.fixture()
def worker(env: dict[str, str]) -> Iterator[Callable[[], Service]]:
    started: list[Service] = []

    def start() -> Service:
        started.append(start_worker(env, concurrency=2))
        return started[-1]

    yield start
    for service in started:
        service.stop()


def big_list(path: Path, n: int = ROWS) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["phone", "name"])
        for i in range(n):
            writer.writerow([f"6{10_000_000 + i:08d}", f"Cliente {i}"])
    return path


def status(env: dict[str, str], cid: str) -> dict[str, Any]:
    return json_of(run(env, "status", cid, "--json"))


def submit_and_kill_mid_load(env: dict[str, str], path: Path, redis_client: redis.Redis,
                             hlr: tuple[str, ...] = ("--no-hlr",)) -> str:
    """Start `submit` with small chunks and SIGKILL it once some chunks are stored, not all."""
    command = [sys.executable, "-m", "dispatcher", "submit", str(path), "--text", "Hola {name}", "--from", "ACME",
               "--country", "ES", *hlr, "--chunk-rows", "500", "--json"]
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("INSTASENT_", "DISPATCHER_")) and k not in ("REDIS_URL", "CELERY_BROKER_URL")}
    process = subprocess.Popen(command, env={**full_env, **env}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def stored_some() -> str | None:
            for key in redis_client.scan_iter("dsptest:c:*"):
                parts = key.decode().split(":")
                if len(parts) == 3 and int(redis_client.hget(key, "total") or 0) >= 1000:
                    return parts[2]
            return None

        cid = str(wait_until(stored_some, 90))
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait(30)
    return cid


def sent_client_ids(sandbox: SandboxHandle, cid: str) -> Counter[str]:
    return Counter({m["clientId"]: m["accepted"] for m in sandbox.messages() if str(m["clientId"]).startswith(cid)})


# HLR on auto in a script (nobody to ask, no number cached) looks nothing up: one pass as well.
@pytest.mark.parametrize("hlr", [("--no-hlr",), ()], ids=["no hlr", "hlr on auto"])
def test_a_killed_submit_says_so_and_resume_stores_every_row_exactly_once(
        env: dict[str, str], worker: Callable[[], Service], tmp_path: Path, sandbox: SandboxHandle,
        redis_client: redis.Redis, hlr: tuple[str, ...]) -> None:
    cid = submit_and_kill_mid_load(env, big_list(tmp_path / "list.csv"), redis_client, hlr)
    killed = wait_until(lambda: (s := status(env, cid))["loading"] and s["loading"]["interrupted"] and s, 90)
    assert killed["state"] == "queued" and 0 < killed["loading"]["stored"] < ROWS
    # Checked and stored in one pass: the messages are counted at the end, the rows are known.
    assert killed["loading"]["expected"] is None and killed["loading"]["file_rows"] == ROWS
    assert "interrupted" in run(env, "status", cid).stdout
    service = worker()
    resumed = run(env, "resume", cid)
    assert resumed.returncode == 0, resumed.stderr
    assert "all 60,000 messages stored" in resumed.stdout
    final = wait_until(lambda: (s := status(env, cid))["state"] == "completed" and s, 180,
                       what=lambda: (status(env, cid), service.log_tail(40)))
    assert final["total"] == ROWS and final["counts"]["sent"] == ROWS and final["loading"] is None
    assert final["preflight"]["valid"] == final["preflight"]["rows"] == ROWS  # the exact totals, written at the end
    estimate = final["preflight"]["hlr_estimate"]
    assert (estimate and (estimate["numbers"], estimate["to_pay"])) == (None if hlr else (ROWS, ROWS))
    assert sandbox.stats()["lookups"] == 0
    accepted = sent_client_ids(sandbox, cid)
    assert len(accepted) == ROWS and set(accepted.values()) == {1}
    report = tmp_path / "report.parquet"
    assert run(env, "report", cid, "-o", str(report)).returncode == 0
    frame = pd.read_parquet(report)
    assert sorted(frame["row"]) == list(range(2, ROWS + 2))  # every row of the file, once


def test_a_killed_submit_can_be_cancelled_with_nothing_sent_twice(
        env: dict[str, str], worker: Callable[[], Service], tmp_path: Path, sandbox: SandboxHandle,
        redis_client: redis.Redis) -> None:
    worker()
    cid = submit_and_kill_mid_load(env, big_list(tmp_path / "list.csv"), redis_client)
    cancelled = run(env, "cancel", cid)
    assert cancelled.returncode == 0, cancelled.stderr
    final = wait_until(lambda: (s := status(env, cid))["counts"]["pending"] == 0 and s["counts"]["unknown"] == 0
                       and s, 90)
    assert final["state"] == "cancelled" and final["loading"] is None
    assert final["counts"]["sent"] + final["counts"]["cancelled"] == final["total"] < ROWS
    accepted = sent_client_ids(sandbox, cid)
    assert len(accepted) == final["counts"]["sent"] and set(accepted.values()) <= {1}
    listed = orjson.loads(run(env, "list", "--json").stdout)
    assert [c["state"] for c in listed] == ["cancelled"]
