"""What the campaign commands print: lists, reports, output paths, missing workers, failures."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.cli.test_campaigns import env, json_of, recipients_csv, run  # noqa: F401  (env is a fixture)

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
