"""The suppression list in a real Redis, and the ``dispatcher suppress`` commands."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import orjson
import pytest
import redis

from dispatcher.errors import InputError
from dispatcher.keys import Keys
from dispatcher.preflight.suppression import SuppressionList, to_e164
from tests.forkserver import run_module
from tests.helpers import SandboxHandle


@pytest.fixture()
def suppression(redis_client: redis.Redis) -> SuppressionList:
    return SuppressionList(redis_client, Keys("dsptest"))


def test_numbers_are_added_once_and_removed(suppression: SuppressionList) -> None:
    assert suppression.add(["+34612345678", "+34612345679", "+34612345678"]) == 2
    assert suppression.add(["+34612345678"]) == 0
    assert "+34612345678" in suppression
    assert sorted(suppression.members()) == ["+34612345678", "+34612345679"]
    assert suppression.remove(["+34612345678", "+34600000000"]) == 1
    assert suppression.count() == 1


def test_flags_answer_for_a_whole_campaign_from_a_small_list(suppression: SuppressionList) -> None:
    suppression.add(["+34612345678", "+447911123456"])
    flags = suppression.flags(["+34612345678", "+34612345679", "+447911123456"])
    assert flags.tolist() == [True, False, True]


def test_flags_ask_redis_when_the_list_is_much_larger_than_the_campaign(suppression: SuppressionList) -> None:
    suppression.add(f"+3461{i:07d}" for i in range(25_000))
    flags = suppression.flags(["+34610000007", "+34699999999", "+34610024999"])
    assert flags.tolist() == [True, False, True]


def test_an_empty_list_or_an_empty_campaign_flags_nothing(suppression: SuppressionList) -> None:
    assert suppression.flags(["+34612345678"]).tolist() == [False]
    suppression.add(["+34612345678"])
    assert suppression.flags([]).tolist() == []


def test_typed_numbers_are_normalised_and_bad_ones_refused() -> None:
    assert to_e164(["612 345 678", "+34-612-345-679"], "ES") == ["+34612345678", "+34612345679"]
    with pytest.raises(InputError, match="'12' is not a number that can be suppressed"):
        to_e164(["612345678", "12"], "ES")


def run_cli(redis_url: str, *args: str, cwd: Path,
            extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": redis_url, "DISPATCHER_KEY_PREFIX": "dsptest", "INSTASENT_TOKEN": "test-token",
           **(extra or {})}
    return run_module("dispatcher", list(args), env, cwd, timeout_s=60)


@pytest.mark.slow
def test_the_suppress_commands_add_list_import_and_remove(redis_client: redis.Redis, redis_url: str,
                                                          tmp_path: Path) -> None:
    added = run_cli(redis_url, "suppress", "add", "612 345 678", "+44 7911 123456", "--country", "ES", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert "Added 2 number(s)" in added.stdout
    optouts = tmp_path / "optouts.csv"
    optouts.write_bytes("Móvil;Nombre\n612345678;Ana\n612 345 679;Bob\nn/a;X\n".encode("cp1252"))
    imported = run_cli(redis_url, "suppress", "import", str(optouts), "--country", "ES", cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert "Imported 2 number(s)" in imported.stdout and "1 new" in imported.stdout
    assert "Skipped 1 row(s) (not a phone number: 1)" in imported.stdout
    listed = run_cli(redis_url, "suppress", "list", cwd=tmp_path)
    assert listed.stdout.split() == ["+34612345678", "+34612345679", "+447911123456"]
    removed = run_cli(redis_url, "suppress", "remove", "+34612345679", cwd=tmp_path)
    assert removed.returncode == 0 and "Removed 1 number(s)" in removed.stdout
    assert SuppressionList(redis_client, Keys("dsptest")).count() == 2


def test_suppressing_an_invalid_number_fails_in_one_sentence(redis_url: str, tmp_path: Path) -> None:
    done = run_cli(redis_url, "suppress", "add", "12345", "--country", "ES", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "'12345' is not a number that can be suppressed" in done.stderr


MIXED = ("phone,name,country\n"
         "612340001,Ana,ES\n"
         "01512 3456789,Hans,DE\n"
         "+44 7911 123456,Bob,\n"
         "07911 123457,Jim,GB\n"
         "06 12 34 56 78,Zoe,FR\n")


@pytest.mark.slow
@pytest.mark.parametrize("country", [[], ["--country", "ES"]])
def test_import_takes_every_number_a_preflight_accepts_with_the_per_row_country(
        redis_client: redis.Redis, redis_url: str, tmp_path: Path, sandbox: SandboxHandle,
        country: list[str]) -> None:
    path = tmp_path / "optouts.csv"
    path.write_text(MIXED)
    env = {"INSTASENT_BASE_URL": sandbox.url}
    checked = run_cli(redis_url, "preflight", str(path), "--text", "x", "--from", "ACME", "--no-hlr", "--json",
                      *country, cwd=tmp_path, extra=env)
    assert orjson.loads(checked.stdout)["valid"] == 5, checked.stderr
    imported = run_cli(redis_url, "suppress", "import", str(path), *country, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert "Imported 5 number(s)" in imported.stdout and "Skipped" not in imported.stdout
    assert sorted(SuppressionList(redis_client, Keys("dsptest")).members()) == [
        "+33612345678", "+34612340001", "+447911123456", "+447911123457", "+4915123456789"]


def test_import_reports_each_skipped_row_with_its_reason(redis_client: redis.Redis, redis_url: str,
                                                         tmp_path: Path) -> None:
    path = tmp_path / "optouts.csv"
    path.write_text("phone,country\n612340001,ES\nn/a,ES\n612340002,XX\n912345678,ES\n")
    rejects = tmp_path / "skipped.csv"
    imported = run_cli(redis_url, "suppress", "import", str(path), "--rejects-out", str(rejects), cwd=tmp_path,
                       extra={"COLUMNS": "200"})
    assert imported.returncode == 0, imported.stderr
    assert "Imported 1 number(s)" in imported.stdout and "Skipped 3 row(s)" in imported.stdout
    for row, reason in ((3, "not a phone number"), (4, "XX"), (5, "not a mobile number (fixed line)")):
        assert re.search(rf"│\s*{row}\s*│[^\n]*{re.escape(reason)}", imported.stdout), (row, imported.stdout)
    with open(rejects, encoding="utf-8-sig") as f:
        assert [line.split(",")[0] for line in f.read().splitlines()] == ["row", "3", "4", "5"]


def test_the_version_grows_with_every_addition_and_not_with_a_removal(suppression: SuppressionList) -> None:
    assert suppression.version() == 0
    suppression.add(["+34600000001", "+34600000002"])
    first = suppression.version()
    suppression.remove(["+34600000001"])
    assert suppression.version() == first > 0
    suppression.add(["+34600000003"])
    assert suppression.version() > first
