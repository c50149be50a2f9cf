"""The HLR pre-check against the sandbox over HTTP: statuses, the Redis cache, limits and retries."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from dispatcher.errors import AuthenticationFailed, ConnectionFailed, OutcomeUnknown, RateLimited
from dispatcher.instasent.client import InstasentClient
from dispatcher.instasent.models import Lookup
from dispatcher.keys import Keys
from dispatcher.preflight.hlr import HlrAnswer, HlrCache, check_numbers, lookup_many
from dispatcher.settings import Settings
from tests.helpers import SandboxHandle

NUMBERS = ["+34612345600", "+34612345613", "+34612345637", "+447911123456", "+33612345678"]


@pytest.fixture()
def client(settings: Settings) -> Iterator[InstasentClient]:
    with InstasentClient.from_settings(settings) as instasent:
        yield instasent


@pytest.fixture()
def cache(redis_client: redis.Redis, settings: Settings) -> HlrCache:
    return HlrCache(redis_client, Keys(settings.key_prefix), settings.hlr_cache_ttl_s)


class Wrapped:
    """The real client, with failures injected before chosen calls and calls timed."""

    def __init__(self, real: InstasentClient, failures: list[Exception] | None = None) -> None:
        self.real = real
        self.failures = list(failures or [])
        self.lock = threading.Lock()
        self.calls: list[float] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def lookup(self, to: str) -> Lookup:
        with self.lock:
            failure = self.failures.pop(0) if self.failures else None
            self.calls.append(time.time())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if failure is not None:
                raise failure
            return self.real.lookup(to)
        finally:
            with self.lock:
                self.in_flight -= 1


def test_statuses_come_from_the_sandbox_and_rejects_carry_the_hlr_reason(
        client: InstasentClient, cache: HlrCache, sandbox: SandboxHandle) -> None:
    outcome = check_numbers(NUMBERS, client=client, cache=cache, concurrency=4)
    statuses = {n: a.status for n, a in outcome.answers.items()}
    assert statuses == {"+34612345600": "valid", "+34612345613": "invalid", "+34612345637": "unreachable",
                        "+447911123456": "valid", "+33612345678": "valid"}
    assert outcome.answers["+34612345613"].reason == "HLR: invalid"
    assert outcome.answers["+34612345637"].reason == "HLR: unreachable"
    assert outcome.answers["+34612345600"].usable and outcome.answers["+34612345600"].reason == ""
    assert sorted(outcome.looked_up) == sorted(NUMBERS)
    assert sandbox.stats()["lookups"] == len(NUMBERS)


def test_a_second_check_is_answered_from_the_cache_without_lookups(
        client: InstasentClient, cache: HlrCache, sandbox: SandboxHandle, redis_client: redis.Redis,
        settings: Settings) -> None:
    check_numbers(NUMBERS[:3], client=client, cache=cache, concurrency=4)
    again = check_numbers(NUMBERS, client=client, cache=cache, concurrency=4)
    assert sorted(again.looked_up) == sorted(NUMBERS[3:])
    assert again.cached == 3
    assert sandbox.stats()["lookups"] == len(NUMBERS)
    third = check_numbers(NUMBERS, client=client, cache=cache, concurrency=4)
    assert third.looked_up == [] and sandbox.stats()["lookups"] == len(NUMBERS)
    ttl = redis_client.ttl(Keys(settings.key_prefix).hlr("+34612345613"))
    assert settings.hlr_cache_ttl_s - 60 < ttl <= settings.hlr_cache_ttl_s


def test_the_guard_sees_only_the_numbers_that_will_be_paid_for(client: InstasentClient, cache: HlrCache) -> None:
    cache.put_many({"+34612345600": HlrAnswer("valid")})
    seen: list[list[str]] = []
    check_numbers(NUMBERS[:2], client=client, cache=cache, concurrency=2, before_lookups=seen.append)
    assert seen == [["+34612345613"]]


def test_a_rate_limit_pauses_every_worker_until_the_window_resets(client: InstasentClient) -> None:
    reset_at = time.time() + 0.4
    wrapped = Wrapped(client, [RateLimited("slow down", reset_at)])
    answers = lookup_many(NUMBERS, wrapped, concurrency=1)
    assert {n: a.status for n, a in answers.items()}["+34612345613"] == "invalid"
    assert len(answers) == len(NUMBERS)
    assert len(wrapped.calls) == len(NUMBERS) + 1
    assert all(t >= reset_at - 0.01 for t in wrapped.calls[1:])


def test_retryable_errors_are_retried_and_permanent_ones_stop_the_check(
        client: InstasentClient, settings: Settings) -> None:
    wrapped = Wrapped(client, [OutcomeUnknown("timed out"), ConnectionFailed("refused")])
    assert lookup_many(NUMBERS[:1], wrapped, concurrency=1)["+34612345600"].status == "valid"
    assert len(wrapped.calls) == 3
    failing = Wrapped(client, [ConnectionFailed("refused")] * 10)
    with pytest.raises(ConnectionFailed):
        lookup_many(NUMBERS[:1], failing, concurrency=1)
    with InstasentClient.from_settings(settings.with_overrides(instasent_token="wrong")) as bad, \
            pytest.raises(AuthenticationFailed):
        lookup_many(NUMBERS, bad, concurrency=2)


def test_lookups_run_in_parallel_but_never_more_than_the_concurrency(
        client: InstasentClient, sandbox: SandboxHandle) -> None:
    sandbox.faults(latency_ms=40)
    wrapped = Wrapped(client)
    numbers = [f"+3461234{i:04d}" for i in range(40)]
    progress: list[tuple[int, int]] = []
    started = time.perf_counter()
    answers = lookup_many(numbers, wrapped, concurrency=8, progress=lambda done, total: progress.append((done, total)))
    elapsed = time.perf_counter() - started
    assert len(answers) == 40
    assert 2 <= wrapped.max_in_flight <= 8
    assert elapsed < 40 * 0.04
    assert progress[0] == (0, 40) and progress[-1] == (40, 40)


def test_an_unreadable_cache_entry_is_looked_up_again(client: InstasentClient, cache: HlrCache,
                                                      redis_client: redis.Redis, settings: Settings) -> None:
    redis_client.set(Keys(settings.key_prefix).hlr("+34612345600"), b"not json")
    outcome = check_numbers(["+34612345600"], client=client, cache=cache, concurrency=1)
    assert outcome.looked_up == ["+34612345600"]
