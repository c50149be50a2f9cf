"""The shared GCRA limiter, against a real Redis server, from several processes at once."""

from __future__ import annotations

import multiprocessing
import time

import pytest
import redis

from dispatcher.instasent.models import RateLimitInfo
from dispatcher.keys import Keys
from dispatcher.sending.ratelimit import HEADROOM, Lane, RateLimiter


def _grab(url: str, lane: Lane, seconds: float, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    limiter = RateLimiter(redis.Redis.from_url(url), Keys("dsptest"))
    stamps = []
    deadline = time.time() + seconds
    while time.time() < deadline:
        if limiter.acquire(lane, max_wait_s=0.5) == 0.0:
            stamps.append(time.time())
    queue.put(stamps)


def test_four_processes_together_never_exceed_the_lane_rate(redis_client: redis.Redis, redis_url: str) -> None:
    lane = Lane("bulk", per_minute=1200)  # 20 per second
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs = [multiprocessing.Process(target=_grab, args=(redis_url, lane, 3.0, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    stamps = sorted(s for _ in procs for s in queue.get(timeout=30))
    for p in procs:
        p.join(10)
    # In any one-second window, at most the per-second rate (plus one for the window's edge).
    per_second = 1200 / 60
    worst = max(sum(1 for t in stamps if start <= t < start + 1.0) for start in stamps)
    assert worst <= per_second + 1
    # And the processes together reach the rate rather than staying well below it.
    assert len(stamps) >= 0.85 * per_second * 3 * HEADROOM


def test_a_message_rate_limits_by_the_number_of_messages(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client, Keys("dsptest"))
    lane = Lane("msgs", per_minute=10**6, messages_per_s=1000)
    assert limiter.try_acquire(lane, messages=100) == 0.0
    wait = limiter.try_acquire(lane, messages=100)
    assert 0.05 < wait <= 0.1


def test_a_paused_lane_makes_every_worker_wait_until_the_reset(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client, Keys("dsptest"))
    other = RateLimiter(redis.Redis(connection_pool=redis_client.connection_pool), Keys("dsptest"))
    lane = Lane("bulk", per_minute=10**6)
    limiter.observe(lane, RateLimitInfo(limit=10, remaining=0, reset=time.time() + 2))
    wait = other.try_acquire(lane)
    assert 1.0 < wait <= 2.0
    assert other.paused_for(lane) > 1.0


def test_a_pause_is_never_shortened(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client, Keys("dsptest"))
    lane = Lane("bulk", per_minute=10**6)
    limiter.pause_until(lane, time.time() + 5)
    limiter.pause_until(lane, time.time() + 1)
    assert limiter.try_acquire(lane) > 4


def test_acquire_returns_the_remaining_wait_instead_of_blocking_too_long(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client, Keys("dsptest"))
    lane = Lane("slow", per_minute=1)
    assert limiter.acquire(lane) == 0.0
    started = time.monotonic()
    assert limiter.acquire(lane, max_wait_s=0.2) > 50
    assert time.monotonic() - started < 0.5


def test_a_lane_needs_a_positive_rate() -> None:
    with pytest.raises(ValueError):
        Lane("x", per_minute=0)
