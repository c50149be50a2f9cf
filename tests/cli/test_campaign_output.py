"""What the campaign commands print: lists, reports, output paths, missing workers, failures."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import openpyxl
import orjson
import pytest
import redis

from tests.cli.test_campaigns import json_of, one_sentence_error, recipients_csv, run
from tests.conftest import SANDBOX_TOKEN, SandboxHandle

pytestmark = pytest.mark.slow


@pytest.fixture()
def env(redis_url: str, sandbox: SandboxHandle, redis_client: redis.Redis) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "INSTASENT_TOKEN": SANDBOX_TOKEN, "INSTASENT_BASE_URL": sandbox.url,
            "DISPATCHER_KEY_PREFIX": "dsptest", "DISPATCHER_RATE_LIMIT": "600000",
            "DISPATCHER_RETRY_BACKOFF": "0.05", "DISPATCHER_RECONCILE_DELAY": "0.2"}


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
