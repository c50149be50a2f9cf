"""What the campaign commands print: lists, reports, output paths, missing workers, failures."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import openpyxl
import orjson
import pytest

from dispatcher.dev.services import start_worker
from tests.helpers import SandboxHandle, json_of, one_sentence_error, recipients_csv, run

pytestmark = pytest.mark.slow


def submitted(env: dict[str, str], path: Path, *options: str) -> str:
    return str(json_of(run(env, "submit", str(path), "--text", "Hola {name}", "--from", "ACME", "--country", "ES",
                           "--no-hlr", "--json", *options))["id"])


def test_list_never_truncates_a_campaign_id_in_an_80_column_terminal(env: dict[str, str], tmp_path: Path) -> None:
    path = recipients_csv(tmp_path / "list.csv", 3)
    cid = submitted(env, path, "--name", "a rather long campaign name for the spring sale of 2026")
    listed = run({**env, "COLUMNS": "80"}, "list")
    assert listed.returncode == 0, listed.stderr
    assert cid in listed.stdout, listed.stdout
    assert max(len(line) for line in listed.stdout.splitlines()) <= 80
    assert [c["id"] for c in orjson.loads(run(env, "list", "--json").stdout)] == [cid]


def test_report_without_output_prints_csv_and_by_extension_writes_real_xlsx(env: dict[str, str],
                                                                           tmp_path: Path) -> None:
    cid = submitted(env, recipients_csv(tmp_path / "list.csv", 3))
    printed = run(env, "report", cid)
    assert printed.returncode == 0, printed.stderr
    rows = list(csv.DictReader(io.StringIO(printed.stdout)))
    assert [r["to"] for r in rows] == ["+34612345678", "+34600000001", "+34600000002"]
    assert {r["status"] for r in rows} == {"pending"}
    xlsx = tmp_path / "report.xlsx"
    done = run(env, "report", cid, "-o", str(xlsx))
    assert done.returncode == 0 and "(xlsx)" in done.stdout
    sheet = openpyxl.load_workbook(xlsx).active
    assert sheet is not None and sheet.max_row == 4 and sheet.cell(row=2, column=2).value == "+34612345678"


@pytest.mark.parametrize("name", ["report.json", "report.txt"])
def test_report_refuses_an_unknown_extension_with_exit_2(env: dict[str, str], tmp_path: Path, name: str) -> None:
    cid = submitted(env, recipients_csv(tmp_path / "list.csv", 3))
    refused = run(env, "report", cid, "-o", str(tmp_path / name))
    assert refused.returncode == 2
    assert ".csv, .xlsx or .parquet" in one_sentence_error(refused)
    assert not (tmp_path / name).exists()


def test_submit_wait_without_a_worker_says_so_within_seconds(env: dict[str, str], tmp_path: Path) -> None:
    started = time.monotonic()
    result = run(env, "submit", str(recipients_csv(tmp_path / "list.csv", 5)), "--text", "Hola", "--from", "ACME",
                 "--country", "ES", "--no-hlr", "--wait")
    assert time.monotonic() - started < 60
    assert result.returncode == 1
    message = one_sentence_error(result)
    assert "no worker is running: start one with `dispatcher worker`" in message
    cid = orjson.loads(run(env, "list", "--json").stdout)[0]["id"]
    assert cid in message  # the campaign is saved and waits for a worker
    status = run(env, "status", cid)
    assert status.returncode == 0 and "no worker is running" in status.stderr
    assert json_of(run(env, "status", cid, "--json"))["workers"] == 0


def test_status_does_not_warn_while_a_worker_runs(env: dict[str, str], tmp_path: Path,
                                                  sandbox: SandboxHandle) -> None:
    sandbox.faults(latency_ms=1500)  # three batches on one process: still running when `status` looks
    worker = start_worker(env, concurrency=1)
    try:
        cid = submitted(env, recipients_csv(tmp_path / "list.csv", 300))
        status = run(env, "status", cid, "--json")
        assert json_of(status)["state"] in ("queued", "running") and json_of(status)["workers"] == 1
        assert "no worker" not in status.stderr
    finally:
        worker.stop()


def test_a_campaign_whose_every_message_failed_exits_1_with_the_last_error(
        env: dict[str, str], tmp_path: Path, sandbox: SandboxHandle) -> None:
    # The worker is pointed at a wrong base URL: every batch fails; the CLI's own preflight is fine.
    worker = start_worker({**env, "INSTASENT_BASE_URL": sandbox.url + "/wrong/v9"}, concurrency=1)
    try:
        result = run(env, "submit", str(recipients_csv(tmp_path / "list.csv", 5)), "--text", "Hola", "--from",
                     "ACME", "--country", "ES", "--no-hlr", "--wait")
    finally:
        worker.stop()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "last error" in result.stdout  # in the status table
    message = one_sentence_error(result)
    assert "did not send: every message failed; last error:" in message
    cid = orjson.loads(run(env, "list", "--json").stdout)[0]["id"]
    shown = json_of(run(env, "status", cid, "--json"))
    assert shown["counts"]["failed"] == 5 and shown["last_error"]
    assert "last error" in run(env, "status", cid).stdout


def test_two_installs_on_one_redis_never_take_each_others_tasks(env: dict[str, str], tmp_path: Path,
                                                               sandbox: SandboxHandle) -> None:
    other = start_worker({**env, "DISPATCHER_KEY_PREFIX": "dspother"}, concurrency=1)
    mine = None
    try:
        cid = submitted(env, recipients_csv(tmp_path / "list.csv", 150))
        assert json_of(run(env, "status", cid, "--json"))["workers"] == 0  # the other install's does not count
        mine = start_worker(env, concurrency=1)
        deadline = time.monotonic() + 90
        while (info := json_of(run(env, "status", cid, "--json")))["state"] != "completed":
            assert time.monotonic() < deadline, info
            time.sleep(0.5)
        assert info["counts"]["sent"] == 150 and sandbox.stats()["accepted"] == 150
    finally:
        other.stop()
        if mine is not None:
            mine.stop()


def test_the_worker_command_line_leaves_the_queue_to_the_key_prefix() -> None:
    from dispatcher.dev.services import worker_argv
    from dispatcher.settings import Settings
    from tasks.app import make_app

    assert "-Q" not in worker_argv()
    assert make_app(Settings(key_prefix="acme")).conf.task_default_queue == "acme:tasks"
    assert make_app(Settings(key_prefix="acme", queue_name="shared")).conf.task_default_queue == "shared"


def test_submit_in_a_script_pays_for_no_lookup_unless_given_hlr(env: dict[str, str], tmp_path: Path,
                                                                sandbox: SandboxHandle) -> None:
    path = recipients_csv(tmp_path / "list.csv", 3)
    shown = json_of(run(env, "submit", str(path), "--text", "Hola", "--from", "ACME", "--country", "ES", "--json"))
    assert shown["total"] == 3 and sandbox.stats()["lookups"] == 0
    assert json_of(run(env, "submit", str(path), "--text", "Hola", "--from", "ACME", "--country", "ES", "--hlr",
                       "--json"))["total"] == 3
    assert sandbox.stats()["lookups"] == 3
