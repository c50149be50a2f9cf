"""The campaign commands as a user runs them: `python -m dispatcher ...` in a subprocess."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pandas as pd
import pytest

from dispatcher.dev.services import Service, free_port, start_worker
from tests.helpers import SandboxHandle, json_of, one_sentence_error, recipients_csv, run

pytestmark = pytest.mark.slow


@pytest.fixture()
def worker(env: dict[str, str]) -> Iterator[Service]:
    service = start_worker(env, concurrency=2)
    yield service
    service.stop()


def test_submit_wait_json_sends_the_list_and_reports_every_message(
        env: dict[str, str], worker: Service, tmp_path: Path, sandbox: SandboxHandle) -> None:
    path = recipients_csv(tmp_path / "list.csv", 450)
    status = json_of(run(env, "submit", str(path), "--text", "Hola {name}", "--from", "ACME", "--country", "ES",
                         "--no-hlr", "--name", "spring", "--wait", "--json"))
    assert status["state"] == "completed" and status["name"] == "spring"
    assert status["total"] == 450 and status["counts"]["sent"] == 450 and status["counts"]["pending"] == 0
    assert sandbox.stats()["accepted"] == 450
    again = json_of(run(env, "status", status["id"], "--json"))
    assert again["counts"] == status["counts"]
    listed = orjson.loads(run(env, "list", "--json").stdout)
    assert [c["id"] for c in listed] == [status["id"]]
    report = tmp_path / "report.csv"
    assert run(env, "report", status["id"], "-o", str(report)).returncode == 0
    frame = pd.read_csv(report, dtype=str, keep_default_na=False)
    assert len(frame) == 450 and set(frame["status"]) == {"sent"}
    assert frame["to"].str.fullmatch(r"\+34[0-9]{9}").all()  # valid E.164 stays unquoted for scripts
    parquet = tmp_path / "report.parquet"
    assert run(env, "report", status["id"], "-o", str(parquet)).returncode == 0
    assert len(pd.read_parquet(parquet)) == 450


def test_submit_refuses_over_budget_with_exit_code_3(env: dict[str, str], tmp_path: Path) -> None:
    path = recipients_csv(tmp_path / "list.csv", 50)
    result = run(env, "submit", str(path), "--text", "Hola", "--from", "ACME", "--country", "ES", "--no-hlr",
                 "--max-cost", "0.01")
    assert result.returncode == 3
    assert "0.01" in one_sentence_error(result)
    assert orjson.loads(run(env, "list", "--json").stdout) == []


def test_lifecycle_commands_on_an_unknown_campaign_say_so_in_one_sentence(env: dict[str, str]) -> None:
    for command in ("status", "pause", "resume", "cancel"):
        result = run(env, command, "nope")
        assert result.returncode == 2
        assert "no campaign with id 'nope'" in one_sentence_error(result)


def test_pause_resume_and_cancel_report_what_they_did(env: dict[str, str], tmp_path: Path) -> None:
    path = recipients_csv(tmp_path / "list.csv", 300)
    cid = json_of(run(env, "submit", str(path), "--text", "Hola", "--from", "ACME", "--country", "ES",
                      "--no-hlr", "--json"))["id"]
    assert run(env, "pause", cid).returncode == 0
    assert json_of(run(env, "status", cid, "--json"))["state"] == "paused"
    assert "resumed" in run(env, "resume", cid).stdout
    cancelled = run(env, "cancel", cid)
    assert cancelled.returncode == 0 and "300 messages will not be sent" in cancelled.stdout
    again = run(env, "cancel", cid)  # idempotent: nothing left to cancel
    assert again.returncode == 0 and "0 messages will not be sent" in again.stdout
    refused = run(env, "resume", cid)
    assert refused.returncode == 2 and "cancelled and cannot become running" in one_sentence_error(refused)


def test_an_unreachable_redis_is_one_sentence(env: dict[str, str]) -> None:
    result = run({**env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}, "list")
    assert result.returncode == 1
    assert "cannot reach Redis" in one_sentence_error(result)


def test_a_missing_token_names_the_variable(env: dict[str, str], tmp_path: Path) -> None:
    path = recipients_csv(tmp_path / "list.csv", 5)
    result = run({k: v for k, v in env.items() if k != "INSTASENT_TOKEN"}, "submit", str(path), "--text", "x",
                 "--from", "ACME", "--country", "ES", "--no-hlr", cwd=tmp_path)
    assert result.returncode == 2
    assert "INSTASENT_TOKEN" in one_sentence_error(result)


def test_a_wrong_token_is_a_configuration_error_without_the_token(env: dict[str, str], tmp_path: Path) -> None:
    path = recipients_csv(tmp_path / "list.csv", 5)
    result = run({**env, "INSTASENT_TOKEN": "wrong-secret-token"}, "submit", str(path), "--text", "x",
                 "--from", "ACME", "--country", "ES", "--no-hlr")
    message = one_sentence_error(result)
    assert result.returncode == 2 and "INSTASENT_TOKEN" in message
    assert "wrong-secret-token" not in result.stderr + result.stdout


def test_rejects_writes_a_submitted_campaigns_rejected_rows_and_status_and_report_explain_it(
        env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("phone,name\n+34611000001,Ana\n12,bad\n+34611000002,Luis\nnope,worse\n")
    early = tmp_path / "early.csv"
    submitted = run(env, "submit", str(path), "--text", "Hola {name}", "--from", "ACME", "--country", "ES",
                    "--no-hlr", "--json", "--rejects-out", str(early))
    assert submitted.returncode == 0, submitted.stderr
    cid = json_of(submitted)["id"]
    written = run(env, "rejects", cid, "-o", str(tmp_path / "r.csv"))
    assert written.returncode == 0, written.stderr
    assert "Wrote 2 rejected rows" in written.stdout
    frame = pd.read_csv(tmp_path / "r.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert list(frame.columns) == ["row", "value", "reason"] and list(frame["value"]) == ["12", "nope"]
    assert list(frame["row"]) == ["3", "5"] and (tmp_path / "early.csv").read_text() == (tmp_path / "r.csv").read_text()
    assert run(env, "rejects", cid, "-o", str(tmp_path / "r.xlsx")).returncode == 0
    assert len(pd.read_excel(tmp_path / "r.xlsx", dtype=str)) == 2
    wrong = run(env, "rejects", cid, "-o", str(tmp_path / "r.pdf"))
    assert wrong.returncode == 2 and ".xlsx" in one_sentence_error(wrong)
    status = run({**env, "COLUMNS": "200"}, "status", cid)  # no worker runs in this test
    assert status.returncode == 0 and "waiting for" in status.stdout and "none is running" in status.stdout
    assert "Hola {name}" in status.stdout and "ACME" in status.stdout
    summary = json_of(run(env, "report", cid, "--json"))
    assert summary["text"] == "Hola {name}" and summary["cost"]["actual"] == "0.00"
    assert summary["totals"]["messages"] == 2 and summary["countries"][0]["country"] == "ES"
    shown = run({**env, "COLUMNS": "200"}, "report", cid, "--summary")
    assert shown.returncode == 0 and "Countries" in shown.stdout and "Timeline (UTC)" in shown.stdout


def test_keep_columns_carries_the_lists_own_columns_into_the_report(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("phone,nombre,importe,status\n+34611000001,Ana,\"45,90\",vip\n12,bad,1,x\n"
                    "+34611000002,=cmd,3,new\n")
    wrong = run(env, "submit", str(path), "--text", "Hola {nombre}", "--from", "ACME", "--country", "ES",
                "--no-hlr", "--keep-columns", "nombre,apellido")
    assert wrong.returncode == 2 and "apellido" in one_sentence_error(wrong) and "nombre" in one_sentence_error(wrong)
    submitted = run(env, "submit", str(path), "--text", "Hola {nombre}", "--from", "ACME", "--country", "ES",
                    "--no-hlr", "--json", "--keep-columns", "nombre,importe,status")
    assert submitted.returncode == 0, submitted.stderr
    cid = json_of(submitted)["id"]
    assert run(env, "report", cid, "-o", str(tmp_path / "r.csv")).returncode == 0
    frame = pd.read_csv(tmp_path / "r.csv", dtype=str, keep_default_na=False)
    assert list(frame.columns)[-3:] == ["nombre", "importe", "list:status"]  # 'status' is the report's own
    assert list(frame["nombre"]) == ["Ana", "'=cmd"] and list(frame["importe"]) == ["45,90", "3"]
    assert list(frame["list:status"]) == ["vip", "new"] and list(frame["row"]) == ["2", "4"]
    assert run(env, "report", cid, "-o", str(tmp_path / "r.parquet")).returncode == 0
    assert list(pd.read_parquet(tmp_path / "r.parquet")["nombre"]) == ["Ana", "=cmd"]  # Parquet: untouched
