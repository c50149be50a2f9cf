"""The HLR pre-check: one ``POST /lookup`` per distinct number, cached in Redis.

Answers are cached per number under ``Keys.hlr(e164)`` for ``Settings.hlr_cache_ttl_s`` seconds,
so running the same campaign again costs no lookups. Lookups run on a thread pool of
``Settings.hlr_concurrency`` workers sharing one (thread-safe) Instasent client; at most twice that
many are queued at once. A 429 pauses every worker until the window resets (``reset_at``), then the
same lookup is tried again; other retryable errors are retried with exponential backoff;
authentication and funding errors stop the whole check.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Protocol

import orjson
import redis

from dispatcher.errors import RateLimited, RetryableError
from dispatcher.instasent.models import Lookup
from dispatcher.keys import Keys

#: Lookup statuses that make a number unusable.
REJECTED_STATUSES = frozenset({"invalid", "unreachable"})
#: Attempts per lookup for retryable errors other than 429.
MAX_ATTEMPTS = 4
#: First backoff delay in seconds (doubled per attempt).
BACKOFF_S = 0.25
#: Most 429 waits per lookup before giving up.
MAX_RATE_LIMIT_WAITS = 20
#: Longest single wait for a rate-limit window, in seconds (windows are one minute).
MAX_RATE_WAIT_S = 65.0
#: Shortest wait after a 429, in seconds (a reset time already past must not cause a busy loop).
MIN_RATE_WAIT_S = 0.25
#: Cache reads/writes per pipeline.
CACHE_BATCH = 5_000

#: Called as ``progress(done, total)`` while lookups run.
Progress = Callable[[int, int], None]


class LookupClient(Protocol):
    """What the HLR step needs from :class:`dispatcher.instasent.client.InstasentClient`."""

    def lookup(self, to: str) -> Lookup:
        """``POST /lookup`` for one E.164 number."""
        ...


@dataclass(frozen=True, slots=True)
class HlrAnswer:
    """A number's HLR status (``valid``, ``invalid``, ``unreachable``) and network, if known."""

    status: str
    country: str = ""
    network: str = ""

    @property
    def usable(self) -> bool:
        """False when the status rejects the number."""
        return self.status not in REJECTED_STATUSES

    @property
    def reason(self) -> str:
        """``HLR: invalid`` and the like; empty for a usable number."""
        return "" if self.usable else f"HLR: {self.status}"

    def to_cache(self) -> bytes:
        """The JSON stored in Redis."""
        return orjson.dumps({"status": self.status, "country": self.country, "network": self.network})

    @classmethod
    def from_cache(cls, raw: bytes | str) -> HlrAnswer | None:
        """Parse a cached answer; None when it cannot be read (it is then looked up again)."""
        try:
            data = orjson.loads(raw)
            return cls(str(data["status"]), str(data.get("country") or ""), str(data.get("network") or ""))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None

    @classmethod
    def from_lookup(cls, lookup: Lookup) -> HlrAnswer:
        """The answer of a fresh lookup (an empty status counts as ``unknown``, which is usable)."""
        return cls(lookup.status or "unknown", lookup.country, lookup.network)


@dataclass(frozen=True, slots=True)
class HlrCache:
    """Cached answers in Redis, one string key per number with a TTL in seconds."""

    redis: redis.Redis
    keys: Keys
    ttl_s: int

    def get_many(self, numbers: Sequence[str]) -> dict[str, HlrAnswer]:
        """The cached answers among ``numbers`` (missing and unreadable entries are left out)."""
        found: dict[str, HlrAnswer] = {}
        for start in range(0, len(numbers), CACHE_BATCH):
            batch = list(numbers[start:start + CACHE_BATCH])
            for number, raw in zip(batch, self.redis.mget([self.keys.hlr(n) for n in batch]), strict=True):
                answer = HlrAnswer.from_cache(raw) if raw is not None else None
                if answer is not None:
                    found[number] = answer
        return found

    def put_many(self, answers: dict[str, HlrAnswer]) -> None:
        """Store answers with the TTL."""
        pipe = self.redis.pipeline(transaction=False)
        for number, answer in answers.items():
            pipe.set(self.keys.hlr(number), answer.to_cache(), ex=self.ttl_s)
        pipe.execute()


class RateGate:
    """Shared by the workers: after a 429, nobody calls again until the window resets."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self._lock = threading.Lock()
        self._until = 0.0
        self._sleep = sleep

    def close_until(self, reset_at: float | None) -> None:
        """Hold every caller until Unix time ``reset_at`` (one second from now when unknown; at
        least :data:`MIN_RATE_WAIT_S` and at most :data:`MAX_RATE_WAIT_S` from now)."""
        now = time.time()
        wanted = reset_at if reset_at is not None else now + 1.0
        until = min(max(wanted, now + MIN_RATE_WAIT_S), now + MAX_RATE_WAIT_S)
        with self._lock:
            self._until = max(self._until, until)

    def wait(self) -> None:
        """Sleep while the gate is closed."""
        while True:
            with self._lock:
                delay = self._until - time.time()
            if delay <= 0:
                return
            self._sleep(min(delay, 1.0))


def lookup_one(client: LookupClient, number: str, gate: RateGate,
               sleep: Callable[[float], None] = time.sleep) -> HlrAnswer:
    """Look ``number`` up, waiting out 429s and retrying other retryable errors.

    Raises:
        RetryableError: after :data:`MAX_ATTEMPTS` failures, or too many 429s.
        DispatcherError: any permanent error at once (401, 402, a rejected request).
    """
    failures = waits = 0
    while True:
        gate.wait()
        try:
            return HlrAnswer.from_lookup(client.lookup(number))
        except RateLimited as exc:
            waits += 1
            if waits > MAX_RATE_LIMIT_WAITS:
                raise
            gate.close_until(exc.reset_at)
        except RetryableError:
            failures += 1
            if failures >= MAX_ATTEMPTS:
                raise
            sleep(BACKOFF_S * 2 ** (failures - 1))


def lookup_many(numbers: Sequence[str], client: LookupClient, *, concurrency: int,
                progress: Progress | None = None, on_batch: Callable[[dict[str, HlrAnswer]], None] | None = None,
                ) -> dict[str, HlrAnswer]:
    """Look every number up with at most ``concurrency`` requests in flight.

    ``on_batch`` receives the answers every few hundred lookups (to cache them as they come, so an
    interrupted run keeps what it paid for). Raises the first permanent error, cancelling the rest.
    """
    total = len(numbers)
    answers: dict[str, HlrAnswer] = {}
    pending_batch: dict[str, HlrAnswer] = {}
    if progress:
        progress(0, total)
    if not total:
        return answers
    gate = RateGate()
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="hlr") as pool:
        try:
            for number, answer in _bounded(pool, numbers, client, gate, 2 * max(1, concurrency)):
                answers[number] = answer
                pending_batch[number] = answer
                if len(pending_batch) >= 500 and on_batch:
                    on_batch(pending_batch)
                    pending_batch = {}
                if progress:
                    progress(len(answers), total)
        finally:
            if pending_batch and on_batch:
                on_batch(pending_batch)
    return answers


def _bounded(pool: ThreadPoolExecutor, numbers: Iterable[str], client: LookupClient, gate: RateGate,
             window: int) -> Iterator[tuple[str, HlrAnswer]]:
    """Submit lookups keeping at most ``window`` queued; yield answers as they complete."""
    todo = iter(numbers)
    running: dict[Future[HlrAnswer], str] = {}
    try:
        while True:
            while len(running) < window:
                number = next(todo, None)
                if number is None:
                    break
                running[pool.submit(lookup_one, client, number, gate)] = number
            if not running:
                return
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                number = running.pop(future)
                yield number, future.result()
    finally:
        for future in running:
            future.cancel()


@dataclass(frozen=True, slots=True)
class HlrOutcome:
    """Answers for every number checked; ``looked_up`` are the numbers paid for in this run."""

    answers: dict[str, HlrAnswer]
    looked_up: list[str]

    @property
    def cached(self) -> int:
        """Numbers answered from the cache."""
        return len(self.answers) - len(self.looked_up)


def check_numbers(numbers: Sequence[str], *, client: LookupClient, cache: HlrCache, concurrency: int,
                  progress: Progress | None = None,
                  before_lookups: Callable[[list[str]], None] | None = None) -> HlrOutcome:
    """HLR answers for distinct ``numbers``: cached ones first, the rest looked up and cached.

    ``before_lookups`` sees the numbers about to be looked up (and may raise to stop first, e.g.
    a budget guard).
    """
    answers = cache.get_many(numbers)
    missing = [n for n in numbers if n not in answers]
    if before_lookups is not None:
        before_lookups(missing)
    fresh = lookup_many(missing, client, concurrency=concurrency, progress=progress, on_batch=cache.put_many)
    answers.update(fresh)
    return HlrOutcome(answers=answers, looked_up=list(fresh))
