"""``dispatcher preflight`` as a user runs it: a subprocess against the sandbox and a real Redis."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.forkserver import run_module
from tests.helpers import SANDBOX_TOKEN, SandboxHandle

LIST = ("phone,name\n"
        "+34 612 345 678,Ana\n"
        "612345678,Ana again\n"
        "612345613,Bob\n"
        "+34 912 345 678,Office\n"
        "=HYPERLINK(\"http://evil\"),Eve\n"
        "3.4612E+10,Excel\n")


def run(sandbox: SandboxHandle, redis_url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INSTASENT_TOKEN": SANDBOX_TOKEN, "INSTASENT_BASE_URL": sandbox.url, "REDIS_URL": redis_url,
           "DISPATCHER_KEY_PREFIX": "dsptest"}
    return run_module("dispatcher", ["preflight", *args], env, cwd, timeout_s=120)


def one_sentence(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture()
def recipients(tmp_path: Path) -> Path:
    path = tmp_path / "recipients.csv"
    path.write_text(LIST)
    return path


@pytest.mark.slow
def test_json_output_has_the_counts_cost_and_every_reject(sandbox: SandboxHandle, redis_url: str,
                                                          redis_client: object, recipients: Path) -> None:
    done = run(sandbox, redis_url, recipients.parent, str(recipients), "--text", "Hola {name}", "--from", "Shop",
               "--country", "ES", "--hlr", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert {k: data[k] for k in ("rows", "valid", "rejected", "duplicates", "suppressed", "messages", "parts")} == {
        "rows": 6, "valid": 1, "rejected": 4, "duplicates": 1, "suppressed": 0, "messages": 1, "parts": 1}
    assert data["currency"] == "EUR" and data["balance"] == pytest.approx(100000.0)
    assert data["lookups"] == 2
    assert data["cost"] == pytest.approx(0.045 + 2 * 0.004)
    assert data["by_country"] == {"ES": {"messages": 1, "parts": 1, "cost": pytest.approx(0.053), "lookups": 2}}
    assert data["rejects"] == [
        {"row": 4, "value": "+34612345613", "reason": "HLR: invalid"},
        {"row": 5, "value": "+34 912 345 678", "reason": "not a mobile number (fixed line)"},
        {"row": 6, "value": '=HYPERLINK("http://evil")', "reason": "not a phone number"},
        {"row": 7, "value": "3.4612E+10", "reason": "mangled by a spreadsheet (scientific notation)"},
    ]
    again = json.loads(run(sandbox, redis_url, recipients.parent, str(recipients), "--text", "Hola {name}",
                           "--from", "Shop", "--country", "ES", "--hlr", "--json").stdout)
    assert (again["lookups"], again["lookups_cached"]) == (0, 2)
    assert sandbox.stats()["lookups"] == 2


def test_the_readable_summary_and_a_spreadsheet_safe_rejects_file(sandbox: SandboxHandle, redis_url: str,
                                                                  redis_client: object, recipients: Path) -> None:
    out = recipients.parent / "rejects.csv"
    done = run(sandbox, redis_url, recipients.parent, str(recipients), "--text", "Hola {name}", "--from", "Shop",
               "--country", "ES", "--no-hlr", "--rejects-out", str(out))
    assert done.returncode == 0, done.stderr
    for heading in ("Messages to send", "Total cost", "By country", "Rejected rows by reason", "not a phone number"):
        assert heading in done.stdout
    with open(out, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["row", "value", "reason"]
    assert rows[1:] == [["5", "'+34 912 345 678", "not a mobile number (fixed line)"],
                        ["6", "'=HYPERLINK(\"http://evil\")", "not a phone number"],
                        ["7", "3.4612E+10", "mangled by a spreadsheet (scientific notation)"]]


def test_a_campaign_over_max_cost_exits_3_with_both_figures(sandbox: SandboxHandle, redis_url: str,
                                                            redis_client: object, recipients: Path) -> None:
    done = run(sandbox, redis_url, recipients.parent, str(recipients), "--text", "Hola {name}", "--from", "Shop",
               "--country", "ES", "--no-hlr", "--max-cost", "0.01", "--json")
    assert done.returncode == 3
    assert "would cost 0.09 EUR, more than --max-cost 0.01 EUR" in one_sentence(done.stderr)
    assert json.loads(done.stdout)["cost"] == pytest.approx(0.09)


def test_a_campaign_over_the_balance_exits_3(sandbox: SandboxHandle, redis_url: str, redis_client: object,
                                             recipients: Path) -> None:
    sandbox.reset(balance=0.05)
    done = run(sandbox, redis_url, recipients.parent, str(recipients), "--text", "Hola {name}", "--from", "Shop",
               "--country", "ES", "--no-hlr")
    assert done.returncode == 3
    assert "would cost 0.09 EUR but the balance is only 0.05 EUR" in one_sentence(done.stderr)


@pytest.mark.parametrize(("content", "args", "message"), [
    (b"", (), "is empty"),
    (b"phone,name\n", (), "has no data rows"),
    (bytes(range(256)) * 8, (), "binary data"),
    (b"id,name\n1,A\n", (), "has no phone column (its columns are: id, name)"),
    (b"phone,name\n612345678,A\n", ("--text", "Hi {surname}"), "no such column; its columns are: phone, name"),
    (b"phone,name\n612345678,A\n", ("--text-column", "name"), "one of them"),
    (b"phone,name\n612345678,A\n", ("--from", "TwelveChars!"), "--from must be 1..11 characters"),
    (b"phone,name\n612345678,A\n", ("--country", "Spain"), "ISO country code"),
])
def test_bad_input_exits_2_with_one_sentence(sandbox: SandboxHandle, redis_url: str, tmp_path: Path,
                                             content: bytes, args: tuple[str, ...], message: str) -> None:
    path = tmp_path / "input.csv"
    path.write_bytes(content)
    base = {"--text": "Hola {name}", "--from": "Shop", "--country": "ES"}
    given = dict(zip(args[::2], args[1::2], strict=True))
    options = [x for k, v in {**base, **given}.items() for x in (k, v)]
    done = run(sandbox, redis_url, tmp_path, str(path), *options, "--no-hlr")
    assert done.returncode == 2
    assert message in one_sentence(done.stderr)


def test_a_missing_file_exits_2(sandbox: SandboxHandle, redis_url: str, tmp_path: Path) -> None:
    done = run(sandbox, redis_url, tmp_path, str(tmp_path / "nope.csv"), "--text", "x", "--from", "Shop")
    assert done.returncode == 2
    assert "file not found" in one_sentence(done.stderr)


def test_an_unreachable_redis_exits_1_in_one_sentence(sandbox: SandboxHandle, recipients: Path) -> None:
    done = run(sandbox, "redis://127.0.0.1:1/0", recipients.parent, str(recipients), "--text", "Hola {name}",
               "--from", "Shop", "--country", "ES", "--no-hlr")
    assert done.returncode == 1
    assert "cannot reach Redis" in one_sentence(done.stderr)


def test_rejects_out_into_a_missing_folder_names_the_folder_before_any_lookup(
        sandbox: SandboxHandle, redis_url: str, redis_client: object, recipients: Path) -> None:
    done = run(sandbox, redis_url, recipients.parent, str(recipients), "--text", "Hola {name}", "--from", "Shop",
               "--country", "ES", "--hlr", "--rejects-out", "nodir/r.csv")
    assert done.returncode == 2
    message = one_sentence(done.stderr)
    assert "folder nodir does not exist" in message and "file not found" not in message
    assert sandbox.stats()["lookups"] == 0  # refused before anything was paid for


@pytest.mark.slow
def test_an_empty_placeholder_value_is_a_reject_shown_in_the_summary(sandbox: SandboxHandle, redis_url: str,
                                                                     redis_client: object, tmp_path: Path) -> None:
    path = tmp_path / "codes.csv"
    path.write_text("phone,name,code\n+34612340001,Ana,H7\n+34612340002,,H8\n+34612340003,Eve\n")
    done = run(sandbox, redis_url, tmp_path, str(path), "--text", "Hola {name}, code {code}", "--from", "Shop",
               "--no-hlr")
    assert done.returncode == 0, done.stderr
    assert "empty value for {name}" in done.stdout and "empty value for {code}" in done.stdout
    assert "of which an empty {placeholder}" in done.stdout
    data = json.loads(run(sandbox, redis_url, tmp_path, str(path), "--text", "Hola {name}, code {code}", "--from",
                          "Shop", "--no-hlr", "--json").stdout)
    assert (data["valid"], data["empty_values"]) == (1, 2)


@pytest.mark.slow
def test_a_script_never_pays_for_lookups_unasked_but_sees_their_estimate(
        sandbox: SandboxHandle, redis_url: str, redis_client: object, recipients: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the summary's lines unwrapped
    done = run(sandbox, redis_url, recipients.parent, str(recipients), "--text", "Hola {name}", "--from", "Shop",
               "--country", "ES")
    assert done.returncode == 0, done.stderr
    assert "not done: --hlr would check 2 numbers: 2 lookups for 0.008 EUR, 0 answered by the cache" in done.stdout
    assert sandbox.stats()["lookups"] == 0
    data = json.loads(run(sandbox, redis_url, recipients.parent, str(recipients), "--text", "Hola {name}",
                          "--from", "Shop", "--country", "ES", "--json").stdout)
    assert data["hlr"] is False and data["lookups"] == 0 and data["lookup_cost"] == 0
    assert data["hlr_estimate"] == {"numbers": 2, "cached": 0, "to_pay": 2, "cost": pytest.approx(0.008),
                                    "currency": "EUR"}
    assert sandbox.stats()["lookups"] == 0
    assert run(sandbox, redis_url, recipients.parent, str(recipients), "--text", "Hola {name}", "--from", "Shop",
               "--country", "ES", "--hlr").returncode == 0
    assert sandbox.stats()["lookups"] == 2
    cached = json.loads(run(sandbox, redis_url, recipients.parent, str(recipients), "--text", "Hola {name}",
                            "--from", "Shop", "--country", "ES", "--json").stdout)
    assert cached["hlr"] is True and cached["lookups_cached"] == 2  # free answers are used without asking
    assert sandbox.stats()["lookups"] == 2


def run_on_a_terminal(sandbox: SandboxHandle, redis_url: str, answer: bytes, *args: str) -> str:
    """Run ``dispatcher preflight`` on a pseudo-terminal, answer its question with ``answer``;
    returns everything it wrote."""
    import pty
    import select
    import time

    env = {**os.environ, "INSTASENT_TOKEN": SANDBOX_TOKEN, "INSTASENT_BASE_URL": sandbox.url, "REDIS_URL": redis_url,
           "DISPATCHER_KEY_PREFIX": "dsptest"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command, with the terminal as stdin, stdout and stderr
        os.execve(sys.executable, [sys.executable, "-m", "dispatcher", "preflight", *args], env)
    output, answered, deadline = b"", False, time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if not select.select([fd], [], [], 0.5)[0]:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the command exited and closed the terminal
                break
            if not chunk:
                break
            output += chunk
            if not answered and b"Pay for the HLR lookups?" in output:
                os.write(fd, answer)
                answered = True
    finally:
        os.close(fd)
        os.waitpid(pid, 0)
    return output.decode(errors="replace")


@pytest.mark.parametrize(("answer", "lookups"), [(b"n\n", 0), (b"y\n", 2)])
def test_at_a_terminal_the_lookups_are_paid_for_only_after_a_yes(
        sandbox: SandboxHandle, redis_url: str, redis_client: object, recipients: Path, answer: bytes,
        lookups: int) -> None:
    shown = run_on_a_terminal(sandbox, redis_url, answer, str(recipients), "--text", "Hola {name}", "--from",
                              "Shop", "--country", "ES")
    assert "Check 2 numbers: 2 lookups for 0.008 EUR, 0 answered by the cache." in shown
    assert "Total cost" in shown
    assert sandbox.stats()["lookups"] == lookups


def test_the_summary_shows_the_first_messages_the_unicode_characters_and_the_price_per_part(
        sandbox: SandboxHandle, redis_url: str, redis_client: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    path = tmp_path / "l.csv"
    path.write_text("phone,name\n+34611000001,Ana\n+34611000002,Zoé 😀\n12,bad\n")
    done = run(sandbox, redis_url, tmp_path, str(path), "--text", "Hola {name}", "--from", "Shop", "--no-hlr")
    assert done.returncode == 0, done.stderr
    assert "First messages, as they will be sent" in done.stdout and "Hola Zoé 😀" in done.stdout
    assert "Characters forcing Unicode: 😀 (U+1F600, 1 messages)" in done.stdout
    assert "Parts per message: 1 part: 2." in done.stdout and "0.045" in done.stdout
