"""Helpers shared by several test modules: waiting on a condition, builders of lists and messages,
the CLI in a subprocess, real workers on the session's Redis, and the checks they share.

Fixtures stay in the ``conftest.py`` files; the scripted Instasent of the unit tests is in
:mod:`tests.fakes`. A test waits for a condition (:func:`wait_until`), never for a fixed time,
unless the time itself is what it tests.
"""

from __future__ import annotations

import csv
import io
import os
import random
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import orjson
import pandas as pd
import redis

from bench.whole_list import submit_prepared
from dispatcher.console.auth import TokenStore
from dispatcher.console.context import Console
from dispatcher.dev.services import Service, start_worker
from dispatcher.keys import Keys
from dispatcher.sending import ledger
from dispatcher.sending.attempt import send_batch
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.context import SendContext
from dispatcher.sending.schedules.store import ScheduleStore
from dispatcher.sending.store import CampaignInfo, CampaignStore
from dispatcher.settings import Settings
from tasks.enqueue import CeleryEnqueuer
from tasks.schedules import Entries
from tests.fakes import FakeInstasent
from tests.forkserver import run_module

if TYPE_CHECKING:  # importing it warns about httpx; only the console's tests need it at run time
    from starlette.testclient import TestClient

T = TypeVar("T")

#: The token the session's sandbox accepts.
SANDBOX_TOKEN = "test-token"
#: A local RabbitMQ, used by the tests that run with it as the broker when one answers.
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"


# --- Waiting ------------------------------------------------------------------------------------

def wait_until(condition: Callable[[], T], timeout_s: float = 30.0, what: str | Callable[[], object] = "",
               interval_s: float = 0.05, ignoring: tuple[type[BaseException], ...] = ()) -> T:
    """Call ``condition`` every ``interval_s`` seconds until it returns something true, and return that.

    ``what`` names what is awaited in the failure message (a callable is called then, to show the
    state at the timeout). Exceptions of the types in ``ignoring`` count as "not yet" (a server that
    is restarting).

    Raises:
        AssertionError: when ``timeout_s`` seconds pass first.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            answer = condition()
        except ignoring:
            answer = None
        if answer:
            return answer
        if time.monotonic() >= deadline:
            shown = what() if callable(what) else what
            raise AssertionError(f"not reached within {timeout_s:g} s: {shown or 'the condition'}")
        time.sleep(interval_s)


#: What a check may raise while a Redis server restarts or fails over: "not yet", for :func:`wait_until`.
RESTARTING = (redis.exceptions.RedisError, OSError)


def wait_through_restarts(check: Callable[[], T], timeout_s: float, what: str) -> T:
    """:func:`wait_until` polling every 0.1 s, counting a Redis that is restarting as "not yet"."""
    return wait_until(check, timeout_s, what, 0.1, RESTARTING)


# --- The session's sandbox ----------------------------------------------------------------------

class SandboxHandle:
    """Talks to a running sandbox's inspection endpoints."""

    def __init__(self, service: Service, token: str = SANDBOX_TOKEN) -> None:
        self.service = service
        self.url = service.url
        self.token = token
        self.http = httpx.Client(base_url=service.url, timeout=30)

    def reset(self, **config: Any) -> None:
        self.http.post("/_sandbox/reset", json=config).raise_for_status()

    def faults(self, **faults: Any) -> None:
        self.http.post("/_sandbox/faults", json=faults).raise_for_status()

    def stats(self) -> dict[str, Any]:
        return dict(self.http.get("/_sandbox/stats").json())

    def messages(self) -> list[dict[str, Any]]:
        return list(self.http.get("/_sandbox/messages").json()["messages"])

    def close(self) -> None:
        self.http.close()


def rabbitmq_up() -> bool:
    """True when a RabbitMQ answers on 127.0.0.1:5672."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", 5672)) == 0


# --- Rate limits --------------------------------------------------------------------------------

#: When a request was granted: no earlier than the first time, no later than the second.
Grant = tuple[float, float]


def over_the_limit(grants: list[Grant], per_minute: int) -> list[str]:
    """Windows holding more requests than the limit allows them.

    A window of ``w`` seconds may hold ``w * per_minute / 60`` requests (rounded up; for a 60 s window,
    exactly the limit): nothing more, so a run of grants ``i..j`` must span at least
    ``(j - i) * 60 / per_minute`` seconds. The span is measured generously (from the earliest time any
    of them can have been granted to the latest), so a failure is a real excess, never noise.
    """
    ordered = sorted(grants)
    problems = []
    for i in range(len(ordered)):
        earliest, latest = ordered[i][0], ordered[i][1]
        for j in range(i + 1, len(ordered)):
            earliest, latest = min(earliest, ordered[j][0]), max(latest, ordered[j][1])
            if (j - i) * 60 / per_minute > latest - earliest:
                problems.append(f"{j - i + 1} requests within {latest - earliest:.4f} s")
    return problems


# --- Messages and lists -------------------------------------------------------------------------

def messages_frame(numbers: Sequence[str], texts: Sequence[str] | str = "x", price: float = 0.05,
                   country: str = "ES") -> pd.DataFrame:
    """One message per number, as the preflight hands them to the store: rows from 2, sender ACME,
    one GSM part each, ``price`` euros each."""
    n = len(numbers)
    text = [texts] * n if isinstance(texts, str) else list(texts)
    return pd.DataFrame({"row": range(2, n + 2), "to": list(numbers), "text": text, "sender": ["ACME"] * n,
                         "parts": [1] * n, "unicode": [False] * n, "price": [price] * n, "country": [country] * n})


def plain_frame(n: int) -> pd.DataFrame:
    """``n`` messages "x" to ``+3460000NNNN``, 0.05 each."""
    return messages_frame([f"+3460000{i:04d}" for i in range(n)])


def accented_frame(n: int) -> pd.DataFrame:
    """``n`` messages whose texts carry ``ñ`` and ``€`` (``Hola {i} ñ€``), 0.045 each."""
    return messages_frame([f"+3460000{i:04d}" for i in range(n)], [f"Hola {i} ñ€" for i in range(n)], 0.045)


def recipients(n: int, start: int = 0) -> pd.DataFrame:
    """``n`` valid Spanish mobiles, one message each."""
    numbers = [f"+346{(start + i):08d}" for i in range(n)]
    return messages_frame(numbers, [f"Hola {i}" for i in range(n)], 0.045)


def stored_campaign(client: redis.Redis, keys: Keys, n: int = 4) -> str:
    """A campaign of ``n`` messages to ``+3461234NNNN`` stored with a window of one batch; its id."""
    frame = messages_frame([f"+3461234{i:04d}" for i in range(n)])
    return CampaignStore(client, keys).create("x", frame, window=1)


def record_sent(client: redis.Redis, keys: Keys, campaign_id: str, ks: list[int],
                id_of: Callable[[int], str] = lambda k: f"i{k}") -> None:
    """Record messages ``k`` (batch ``k // 100``, index ``k % 100``) as sent under Instasent id
    ``id_of(k)``, as a worker does after Instasent's answer."""
    ops = BatchOps(client, keys)
    by_batch: dict[int, list[int]] = {}
    for k in ks:
        by_batch.setdefault(k // 100, []).append(k)
    for n, group in sorted(by_batch.items()):
        claim = ops.claim(campaign_id, n, lease_s=0)
        assert claim.claimed
        ops.record(campaign_id, n, [(k % 100, ledger.encode("sent", 1, id_of(k))) for k in group], otherwise="p",
                   token=claim.token)


def recipients_csv(path: Path, n: int) -> Path:
    """A CSV of ``n`` national Spanish mobiles under a ``Teléfono`` header, with names, and one bad row."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Teléfono", "name"])
        for i in range(n):
            writer.writerow([f"6{i:08d}"[:9] if i else "612345678", f"Cliente {i}"])
        writer.writerow(["12345", "bad"])
    return path


def schedule_csv(path: Path, n: int = 120) -> Path:
    """A CSV of ``n`` E.164 Spanish mobiles under a ``phone`` header, with names, for schedules."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["phone", "name"])
        writer.writerows([f"+346{i:08d}", f"N{i}"] for i in range(n))
    return path


def messy_list(path: Path, n: int = 2500, seed: int = 3) -> Path:
    """Valid mobiles in several formats and countries, duplicates far apart (across chunks), junk,
    a ragged row, an empty text and a Unicode name."""
    rng = random.Random(seed)
    numbers = [f"6{10_000_000 + rng.randrange(10**7):08d}" for _ in range(n)]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["phone", "name", "country"])
        for i, number in enumerate(numbers):
            roll = rng.random()
            if roll < 0.05:
                writer.writerow([rng.choice(["n/a", "3.4612E+10", "12345", "+34 912 345 678"]), "x", "ES"])
            elif roll < 0.15 and i > 300:
                earlier = numbers[rng.randrange(i - 300)]
                writer.writerow([f"+34 {earlier[:3]} {earlier[3:]}", f"dup {i}", ""])
            elif roll < 0.18:
                writer.writerow([f"+351 91{rng.randrange(10**7):07d}", "João", "PT"])
            elif roll < 0.19:
                writer.writerow([number, "", "XX"])
            else:
                writer.writerow([number, rng.choice(["Ana", "Zoë", "Łukasz"]), "ES"])
        writer.writerow(["612000001", "ragged", "ES", "extra"])
    return path


# --- The CLI in a subprocess --------------------------------------------------------------------

def run(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m dispatcher ARGS`` with ``env`` over this process's environment minus every setting
    (forked from :mod:`tests.forkserver`, which has the CLI imported already)."""
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("INSTASENT_", "DISPATCHER_")) and k not in ("REDIS_URL", "CELERY_BROKER_URL")}
    return run_module("dispatcher", list(args), {**full_env, **env}, cwd, timeout_s=180)


def one_sentence_error(result: subprocess.CompletedProcess[str]) -> str:
    """The error a command printed, joined into one line, after checking it is no traceback."""
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error:"), result.stderr
    return " ".join(lines)


def json_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The last line of a successful command's output, read as a JSON object."""
    assert result.returncode == 0, result.stderr
    return dict(orjson.loads(result.stdout.strip().splitlines()[-1]))


# --- Real workers on the session's Redis --------------------------------------------------------

def worker_env(settings: Settings, **extra: Any) -> dict[str, str]:
    """The environment of a worker (or beat) process on ``settings``, with short timeouts and waits."""
    env = {
        "REDIS_URL": settings.redis_url, "INSTASENT_TOKEN": settings.instasent_token.reveal(),
        "INSTASENT_BASE_URL": settings.instasent_base_url, "DISPATCHER_KEY_PREFIX": settings.key_prefix,
        "DISPATCHER_RATE_LIMIT": str(settings.rate_limit_per_min), "DISPATCHER_READ_TIMEOUT": "1",
        "DISPATCHER_CONNECT_TIMEOUT": "1", "DISPATCHER_WRITE_TIMEOUT": "1", "DISPATCHER_RETRY_BACKOFF": "0.05",
        "DISPATCHER_RETRY_BACKOFF_MAX": "0.5", "DISPATCHER_RECONCILE_DELAY": "0.2",
        "DISPATCHER_MAX_SLOT_WAIT": "1", "DISPATCHER_BATCH_LEASE": "4", "DISPATCHER_QUEUE_WINDOW": "8",
        # The tests' private Redis does not persist; the Redis-restart tests start one that does.
        "DISPATCHER_ALLOW_VOLATILE_REDIS": "1",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Harness:
    """Submits campaigns and watches them; starts workers with the test's settings."""

    def __init__(self, settings: Settings, redis_client: redis.Redis, sandbox: SandboxHandle) -> None:
        self.settings = settings
        self.sandbox = sandbox
        keys = Keys(settings.key_prefix)
        self.store = CampaignStore(redis_client, keys)
        self.ops = BatchOps(redis_client, keys)
        self.enqueuer = CeleryEnqueuer(settings)
        self.workers: list[Service] = []

    def start_worker(self, concurrency: int = 2, **env: Any) -> Service:
        service = start_worker(worker_env(self.settings, **env), concurrency=concurrency)
        self.workers.append(service)
        return service

    def submit(self, frame: pd.DataFrame, name: str = "test", priority: str = "normal") -> str:
        return submit_prepared(self.store, self.ops, self.enqueuer, self.settings, name=name, messages=frame,
                               priority=priority)

    def wait(self, cid: str, until: Callable[[CampaignInfo], bool], timeout_s: float = 120) -> CampaignInfo:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            info = self.store.get(cid)
            if until(info):
                return info
            time.sleep(0.1)
        logs = "\n".join(w.log_tail(30) for w in self.workers)
        raise AssertionError(f"campaign {cid} stuck at {self.store.get(cid)}\n{logs}")

    def accepted_per_client_id(self, cid: str) -> Counter[str]:
        return Counter({m["clientId"]: m["accepted"] for m in self.sandbox.messages()
                        if str(m["clientId"]).startswith(cid)})

    def stop(self) -> None:
        for w in self.workers:
            w.stop()


def finished(info: CampaignInfo) -> bool:
    """True when a campaign no longer sends by itself (completed, cancelled, failed or paused)."""
    return info.state in ("completed", "cancelled", "failed", "paused")


def assert_exactly_once(h: Harness, cid: str, info: CampaignInfo) -> None:
    """Every message the ledger counts as sent was accepted by the sandbox once, and none is left open."""
    accepted = h.accepted_per_client_id(cid)
    assert not [c for c, n in accepted.items() if n > 1], "a clientId was accepted twice"
    assert info.counts["sent"] == len(accepted)
    assert info.counts["pending"] == 0 and info.counts["unknown"] == 0


# --- Sending in process, with an injected clock -------------------------------------------------

#: A Monday, 03:00 UTC: the injected clock's start.
MONDAY_3AM_UTC = datetime(2026, 11, 23, 3, 0, tzinfo=UTC).timestamp()


@dataclass
class Clock:
    """A clock the test moves by hand (seconds since the epoch)."""

    now: float = MONDAY_3AM_UTC

    def __call__(self) -> float:
        return self.now

    def at(self, hour: int, minute: int = 0) -> None:
        self.now = datetime(2026, 11, 23, hour, minute, tzinfo=UTC).timestamp()


@dataclass
class Queue:
    """An enqueuer that keeps the batches instead of sending them to a broker."""

    items: list[tuple[str, int]] = field(default_factory=list)

    def enqueue(self, campaign_id: str, numbers: Sequence[int]) -> None:
        self.items += [(campaign_id, n) for n in numbers]

    def drain(self, sender: SendContext, log: list[tuple[float, str]], fake: FakeInstasent) -> None:
        while self.items:
            cid, n = self.items.pop(0)
            before = set(fake.accepted)
            outcome = send_batch(sender, cid, n)
            log += [(sender.clock(), c) for c in set(fake.accepted) - before]
            self.enqueue(cid, outcome.enqueue)


# --- The console --------------------------------------------------------------------------------

@dataclass
class ConsoleHandle:
    """A test client of the console with an admin and a viewer token."""

    http: TestClient
    console: Console
    admin: str
    viewer: str

    def as_admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin}"}

    def as_viewer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.viewer}"}


def build_console(settings: Settings, client: redis.Redis, public_metrics: bool = False) -> Console:
    """The console's context on ``client``, queuing batches through the real Celery enqueuer."""
    keys = Keys(settings.key_prefix)
    return Console(settings=settings, store=CampaignStore(client, keys), ops=BatchOps(client, keys),
                   schedules=ScheduleStore(client, keys), tokens=TokenStore(client, keys),
                   enqueuer=CeleryEnqueuer(settings), entries=Entries(settings),
                   public_metrics=public_metrics)


#: The options of a console upload that every test sends unless it says otherwise.
UPLOAD_OPTIONS = {"text": "Hola {name}", "from": "ACME", "country": "ES", "no_hlr": "1"}


def small_csv(n: int = 120, bad: int = 1) -> bytes:
    """A CSV of ``n`` E.164 Spanish mobiles with names, and ``bad`` rows with an invalid number."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["phone", "name"])
    for i in range(n):
        writer.writerow([f"+3461{i:07d}", f"Cliente {i}"])
    for _ in range(bad):
        writer.writerow(["12345", "bad"])
    return out.getvalue().encode()


def upload_campaign(api: ConsoleHandle, body: bytes | None = None, **fields: str) -> dict[str, Any]:
    """``POST /api/campaigns`` as the admin (201 checked); the campaign's status object."""
    response = api.http.post("/api/campaigns", headers=api.as_admin(), data={**UPLOAD_OPTIONS, **fields},
                             files={"file": ("list.csv", body or small_csv(), "text/csv")})
    assert response.status_code == 201, response.text
    return dict(response.json())
