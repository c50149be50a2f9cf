"""`dispatcher demo` as a user runs it, stopped with SIGTERM instead of Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatcher.dev.services import free_port

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "campaign.csv"


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children, grandchildren, ...), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture()
def demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, set[int]]]:
    log = tmp_path / "demo.log"
    # The head of the example list: what is tested is how the demo stops, not how long it sends,
    # and the whole list takes minutes of HLR lookups at the demo's rate limit.
    head = tmp_path / "campaign.csv"
    head.write_text("".join(EXAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)[:201]), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INSTASENT_", "DISPATCHER_", "CELERY_"))}
    # A port nothing listens on: the demo starts (and must stop) a Redis of its own too.
    env["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dispatcher", "demo", "--file", str(head), "--workers", "1",
             "--flower-port", str(free_port()), "--keep-running"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    seen: set[int] = set()  # the test adds what it finds: once the demo is gone, its orphans are not below it
    try:
        yield process, log, seen
    finally:
        seen |= descendants(process.pid)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        for pid in seen:  # only what this demo started, by PID, if the test failed half-way
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_sigterm_stops_the_demo_and_every_process_it_started(
        demo: tuple[subprocess.Popen[bytes], Path, set[int]]) -> None:
    process, log, seen = demo
    deadline = time.monotonic() + 400
    while "until you press Ctrl-C" not in log.read_text(errors="replace"):
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, "the demo did not reach --keep-running in time"
        time.sleep(0.5)
    children = descendants(process.pid)
    seen |= children
    assert len(children) >= 5, children  # redis, webhook, sandbox, worker (and its pool), Flower
    process.send_signal(signal.SIGTERM)
    code = process.wait(120)
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = {pid: Path(f"/proc/{pid}/cmdline").read_bytes()[:80] for pid in children if alive(pid)}
    assert not left, left
    assert code in (0, 130)  # as after Ctrl-C: 0 once it waits in --keep-running
