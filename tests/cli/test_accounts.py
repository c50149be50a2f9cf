"""``dispatcher account add|list|remove`` end to end: real CLI processes, the private Redis and a real
sandbox process that plays two organizations. No token ever appears in any output."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from dispatcher.dev.services import Service, start_sandbox
from tests.helpers import SANDBOX_TOKEN, one_sentence_error, recipients_csv, run

pytestmark = pytest.mark.slow  # CLI processes against a sandbox process of its own: seconds each

PASSPHRASE = "an agency's passphrase of 40 characters!"
TOKENS = {"a1": "tA1-4b7e1d9c2a6f38e0b5c3", "a2": "tA2-9e2c6a1f4d8b37c0a5e7", "b": "tB-3f8d1b6e9a2c45d7e0b4"}
PROJECTS = {"a1": "acme", "a2": "acme", "b": "beta"}
DEFAULT_TOKEN = "tDefault-7c2e9a4f1b6d"


@pytest.fixture(scope="module")
def orgs_sandbox() -> Iterator[Service]:
    projects = [*(f"{PROJECTS[name]}:{token}" for name, token in TOKENS.items()), f"acme:{DEFAULT_TOKEN}"]
    service = start_sandbox(*(arg for p in projects for arg in ("--project", p)), "--rate-limit", "0",
                            "--balance", "250", token=SANDBOX_TOKEN)
    yield service
    service.stop()


@pytest.fixture()
def env(redis_url: str, orgs_sandbox: Service, redis_client: redis.Redis) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "INSTASENT_TOKEN": DEFAULT_TOKEN, "INSTASENT_BASE_URL": orgs_sandbox.url,
            "DISPATCHER_KEY_PREFIX": "dsptest", "DISPATCHER_SECRET_KEY": PASSPHRASE,
            "DISPATCHER_ALLOW_VOLATILE_REDIS": "1"}


class Outputs:
    """Every command's stdout and stderr, to check at the end that none holds a token."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def run(self, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        result = run(env, *args)
        self.seen += [result.stdout, result.stderr]
        return result

    def assert_no_token(self) -> None:
        text = "".join(self.seen)
        assert text
        for token in [*TOKENS.values(), DEFAULT_TOKEN, PASSPHRASE]:
            assert token not in text


def listed(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in orjson.loads(result.stdout.strip().splitlines()[-1])}


def test_accounts_are_added_listed_with_organization_balance_and_fingerprint_and_removed(
        env: dict[str, str]) -> None:
    outputs = Outputs()
    for name, token in TOKENS.items():
        added = outputs.run(env, "account", "add", name, "--token", token)
        assert added.returncode == 0, added.stderr
        assert f"Added account {name} (organization {PROJECTS[name]}, token " in added.stdout
    rows = listed(outputs.run(env, "account", "list", "--json"))
    assert list(rows) == ["default", "a1", "a2", "b"]
    assert {name: row["organization"] for name, row in rows.items()} == {"default": "acme", **PROJECTS}
    assert {row["balance"] for row in rows.values()} == {250.0}
    assert {row["currency"] for row in rows.values()} == {"EUR"}
    fingerprints = [row["fingerprint"] for row in rows.values()]
    assert len(set(fingerprints)) == 4 and all(len(f) == 8 and int(f, 16) >= 0 for f in fingerprints)
    table = outputs.run(env, "account", "list")
    assert table.returncode == 0 and all(name in table.stdout for name in rows) and "250.00 EUR" in table.stdout
    assert all(f in table.stdout for f in fingerprints)
    removed = outputs.run(env, "account", "remove", "a2")
    assert removed.returncode == 0 and "Removed account a2." in removed.stdout
    assert list(listed(outputs.run(env, "account", "list", "--json"))) == ["default", "a1", "b"]
    outputs.assert_no_token()


def test_a_token_left_out_of_the_command_line_is_asked_without_echo(env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "dispatcher", "account", "add", "b"], input=TOKENS["b"] + "\n",
                          env={**{k: v for k, v in os.environ.items()
                                  if not k.startswith(("INSTASENT_", "DISPATCHER_")) and k != "REDIS_URL"}, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Added account b (organization beta" in done.stdout
    assert TOKENS["b"] not in done.stdout + done.stderr


@pytest.mark.parametrize(("secret", "words"), [
    ("", "DISPATCHER_SECRET_KEY is not set"),
    ("too short, 31 characters long!!", "DISPATCHER_SECRET_KEY is too short")])
def test_a_missing_or_short_passphrase_is_one_sentence(env: dict[str, str], secret: str, words: str) -> None:
    outputs = Outputs()
    for args in (("account", "add", "b", "--token", TOKENS["b"]), ("account", "list")):
        result = outputs.run({**env, "DISPATCHER_SECRET_KEY": secret}, *args)
        assert result.returncode == 2
        error = one_sentence_error(result)
        assert words in error and "32 characters" in error
    outputs.assert_no_token()


def test_a_wrong_passphrase_an_unknown_account_and_a_refused_token_are_one_sentence_each(
        env: dict[str, str]) -> None:
    outputs = Outputs()
    assert outputs.run(env, "account", "add", "b", "--token", TOKENS["b"]).returncode == 0
    wrong = {**env, "DISPATCHER_SECRET_KEY": PASSPHRASE.upper()}
    cases = [(wrong, ("account", "list"), "does not open the stored accounts"),
             (wrong, ("account", "add", "a1", "--token", TOKENS["a1"]), "does not open the stored accounts"),
             (env, ("account", "remove", "nope"), "no account is named 'nope'"),
             (env, ("account", "remove", "default"), "cannot be removed"),
             (env, ("account", "add", "b", "--token", TOKENS["a2"]), "already named b"),
             (env, ("account", "add", "c", "--token", "tUnknown-0a9b8c"), "refused the token of account c (401)")]
    for environment, args, words in cases:
        result = outputs.run(environment, *args)
        assert result.returncode != 0
        assert words in one_sentence_error(result), args
    outputs.assert_no_token()
    assert "tUnknown-0a9b8c" not in "".join(outputs.seen)


def test_a_balance_that_cannot_be_asked_shows_a_short_reason(env: dict[str, str]) -> None:
    outputs = Outputs()
    added = outputs.run(env, "account", "add", "gone", "--token", TOKENS["b"], "--base-url", "http://127.0.0.1:9",
                        "--organization", "beta")
    assert added.returncode == 0, added.stderr
    rows = listed(outputs.run(env, "account", "list", "--json"))
    assert rows["gone"]["balance"] is None and rows["gone"]["balance_error"] == "unreachable"
    assert rows["default"]["balance"] == 250.0
    table = outputs.run(env, "account", "list")
    assert table.returncode == 0 and "Traceback" not in table.stdout + table.stderr
    assert "unreachable" in table.stdout
    outputs.assert_no_token()


def test_existing_commands_still_use_instasent_token_without_a_passphrase(env: dict[str, str], tmp_path: Path) -> None:
    no_key = {k: v for k, v in env.items() if k != "DISPATCHER_SECRET_KEY"}
    done = run(no_key, "preflight", str(recipients_csv(tmp_path / "list.csv", 5)), "--text", "Hola {name}",
               "--from", "Shop", "--country", "ES", "--no-hlr", "--json")
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["balance"] == 250.0  # acme's balance: the default token's organization


def test_a_campaign_submitted_for_an_account_shows_it_in_status_list_and_report(
        env: dict[str, str], tmp_path: Path) -> None:
    outputs = Outputs()
    assert outputs.run(env, "account", "add", "a1", "--token", TOKENS["a1"]).returncode == 0
    csv = str(recipients_csv(tmp_path / "list.csv", 5))
    message = ("--text", "Hola {name}", "--from", "Shop", "--country", "ES", "--no-hlr")
    checked = outputs.run(env, "preflight", csv, *message, "--account", "a1", "--json")
    assert checked.returncode == 0 and orjson.loads(checked.stdout)["valid"] == 5, checked.stderr
    submitted = outputs.run(env, "submit", csv, *message, "--account", "a1", "--json")
    assert submitted.returncode == 0, submitted.stderr
    data = orjson.loads(submitted.stdout.strip().splitlines()[-1])
    assert (data["account"], data["organization"]) == ("a1", "acme")
    status = orjson.loads(outputs.run(env, "status", data["id"], "--json").stdout)
    assert (status["account"], status["organization"]) == ("a1", "acme")
    default = orjson.loads(outputs.run(env, "submit", csv, *message, "--json").stdout.strip().splitlines()[-1])
    assert (default["account"], default["organization"]) == ("default", "acme")  # its balance answer names acme
    rows = orjson.loads(outputs.run(env, "list", "--json").stdout)
    assert {row["id"]: row["account"] for row in rows} == {data["id"]: "a1", default["id"]: "default"}
    assert orjson.loads(outputs.run(env, "report", data["id"], "--summary", "--json").stdout)["account"] == "a1"
    table = outputs.run(env, "status", data["id"])
    assert "a1 (organization acme)" in table.stdout
    outputs.assert_no_token()


def test_an_unknown_account_is_one_sentence_naming_the_command_that_lists_them(
        env: dict[str, str], tmp_path: Path) -> None:
    outputs = Outputs()
    csv = str(recipients_csv(tmp_path / "list.csv", 5))
    message = ("--text", "Hola {name}", "--from", "Shop", "--country", "ES", "--no-hlr", "--account", "nope")
    for args in (("preflight", csv, *message), ("submit", csv, *message),
                 ("schedule", "add", "weekly", csv, "--every", "1h", *message)):
        result = outputs.run(env, *args)
        assert result.returncode == 2
        assert "no account is named 'nope': see dispatcher account list." in one_sentence_error(result), args
    assert orjson.loads(outputs.run(env, "list", "--json").stdout) == []
    outputs.assert_no_token()


def test_an_accounts_own_suppression_list_is_edited_with_account_and_only_its_campaigns_respect_it(
        env: dict[str, str], tmp_path: Path) -> None:
    outputs = Outputs()
    assert outputs.run(env, "account", "add", "a1", "--token", TOKENS["a1"]).returncode == 0
    added = outputs.run(env, "suppress", "add", "612345678", "--country", "ES", "--account", "a1")
    assert added.returncode == 0, added.stderr
    assert outputs.run(env, "suppress", "list", "--account", "a1").stdout.split() == ["+34612345678"]
    assert outputs.run(env, "suppress", "list").stdout.split() == []  # the global list is untouched
    csv = str(recipients_csv(tmp_path / "list.csv", 5))
    message = ("--text", "Hola {name}", "--from", "Shop", "--country", "ES", "--no-hlr", "--json")
    for account, valid in (("a1", 4), ("default", 5)):
        checked = outputs.run(env, "preflight", csv, *message, "--account", account)
        assert orjson.loads(checked.stdout)["valid"] == valid, (account, checked.stderr)
    removed = outputs.run(env, "suppress", "remove", "+34612345678", "--account", "a1")
    assert removed.returncode == 0 and outputs.run(env, "suppress", "list", "--account", "a1").stdout == ""
    unknown = outputs.run(env, "suppress", "add", "612345678", "--country", "ES", "--account", "nope")
    assert unknown.returncode != 0
    assert one_sentence_error(unknown) == "error: no account is named 'nope': see dispatcher account list."
    outputs.assert_no_token()
