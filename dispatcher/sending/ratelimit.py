"""One rate limiter in Redis, shared by every worker process on every host.

Each lane (one Instasent endpoint) is a GCRA ("generic cell rate algorithm") with no burst: a
request may go when the lane's theoretical arrival time has come, which spaces requests exactly
``60 / limit`` seconds apart across all workers. Unlike a token bucket, that spacing can never put
more than ``limit`` requests in any minute, whichever minute Instasent counts in, so we aim a hair
under the limit (``HEADROOM``) only to absorb network jitter. An optional second GCRA caps
messages per second. When Instasent answers 429 or ``X-RateLimit-Remaining`` reaches 0, the
lane is paused until ``X-RateLimit-Reset`` for every worker at once.

All time comes from the Redis server's clock (``TIME``), so hosts with skewed clocks agree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from dispatcher.instasent.models import RateLimitInfo
from dispatcher.keys import Keys
from dispatcher.schema.scripts import script

#: Share of the configured limit we aim for: spacing jitter must not tip a minute over it.
HEADROOM = 0.98

#: Lane name -> the latest ``X-RateLimit-Limit`` Instasent answered on it, in this process.
_learned: dict[str, int] = {}


def learned_limit(lane: str) -> int | None:
    """The requests per minute Instasent last said ``lane`` allows (``X-RateLimit-Limit``), in
    this process; None before any answer said."""
    return _learned.get(lane)


@dataclass(frozen=True, slots=True)
class SlotRequest:
    """A lane's slot, as the keys and arguments of ``take_slot`` in ``lua/slot.lua``:
    ``[request TAT, message TAT, pause]`` and ``[µs between requests, µs per message, µs ahead]``."""

    keys: list[str]
    args: list[int]


@dataclass(frozen=True, slots=True)
class Lane:
    """A rate-limited lane: ``per_minute`` requests and optionally ``messages_per_s`` messages."""

    name: str
    per_minute: int
    messages_per_s: float = 0.0

    def __post_init__(self) -> None:
        if self.per_minute < 1:
            raise ValueError("a lane needs at least one request per minute")
        if self.messages_per_s < 0:
            raise ValueError("messages_per_s cannot be negative")


class RateLimiter:
    """Shared GCRA limiter. Create one per process and call :meth:`acquire` before each request."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys
        self._acquire = client.register_script(script("slot", "acquire"))
        self._pause = client.register_script(script("pause"))
        #: Seconds this limiter has slept in :meth:`acquire` waiting for slots (for telemetry).
        self.waited_s = 0.0
        #: (lane name, slot) taken by another script for the next :meth:`acquire` (see :meth:`hold`).
        self._held: tuple[str, float] | None = None

    def hold(self, lane: Lane, slot_s: float) -> None:
        """Keep a slot of ``lane`` that another script took with ``lua/slot.lua`` (the claim does):
        the next :meth:`acquire` of that lane uses it instead of asking Redis. ``slot_s`` is that
        script's answer in seconds: 0.0 taken now, negative booked that far ahead, positive none."""
        self._held = (lane.name, slot_s)

    def try_acquire(self, lane: Lane, messages: int = 1) -> float:
        """Take a slot if one is free: 0.0 when taken, else seconds to wait before trying again."""
        return max(0.0, self._take(lane, messages, 0.0))

    def _take(self, lane: Lane, messages: int, ahead_s: float) -> float:
        """One try: 0.0 for a slot now, minus the seconds to a slot booked within ``ahead_s``, else
        the seconds to wait before asking again."""
        request = self.slot_request(lane, ahead_s)
        # ARGV: µs between requests, µs per message (0: no message cap), messages in this request, µs ahead.
        args = [request.args[0], request.args[1], messages, request.args[2]]
        wait_us = int(self._acquire(keys=request.keys, args=args))
        return wait_us / 1_000_000

    def slot_request(self, lane: Lane, ahead_s: float) -> SlotRequest:
        """What another script needs to take a slot of ``lane`` (booked at most ``ahead_s`` ahead)
        with ``lua/slot.lua`` in the same call (the claim does)."""
        req_step = int(60_000_000 / (lane.per_minute * HEADROOM))
        msg_step = int(1_000_000 / lane.messages_per_s) if lane.messages_per_s else 0
        keys = [self._keys.rate(lane.name), self._keys.rate_messages(lane.name), self._keys.lane_pause(lane.name)]
        return SlotRequest(keys, [req_step, msg_step, int(ahead_s * 1_000_000)])

    def _sleep_to_booked(self, wait_s: float) -> None:
        """Sleep until a slot booked ``wait_s`` seconds ahead starts (sending earlier would break the spacing)."""
        if wait_s > 0:
            self.waited_s += wait_s
            time.sleep(wait_s)

    def acquire(self, lane: Lane, messages: int = 1, max_wait_s: float = 10.0) -> float:
        """Block until a slot is taken, or until waiting longer would exceed ``max_wait_s``.

        A slot less than ``max_wait_s`` away is booked in the same call and slept to, so callers
        queueing for the lane ask Redis once each instead of polling it together. Returns 0.0 when
        a slot was taken, else the seconds still to wait (the caller should retry later rather
        than hold a worker).
        """
        deadline = time.monotonic() + max_wait_s
        held, self._held = self._held, None
        while True:
            if held is not None and held[0] == lane.name:
                wait, held = held[1], None
            else:
                wait = self._take(lane, messages, max(0.0, deadline - time.monotonic()))
            if wait <= 0:
                self._sleep_to_booked(-wait)
                return 0.0
            if time.monotonic() + wait > deadline:
                return wait
            self.waited_s += wait
            time.sleep(wait)

    def pause_until(self, lane: Lane, until_unix_s: float) -> None:
        """Pause ``lane`` for every worker until ``until_unix_s`` (never shortens a pause)."""
        # ARGV: pause until (Unix µs).
        self._pause(keys=[self._keys.lane_pause(lane.name)], args=[int(until_unix_s * 1_000_000)])

    def observe(self, lane: Lane, info: RateLimitInfo | None) -> None:
        """Remember the lane's limit, and pause the lane until the window resets when Instasent
        says none are left."""
        if info is not None and info.limit > 0:
            _learned[lane.name] = info.limit
        if info is not None and info.remaining <= 0 and info.reset > time.time():
            self.pause_until(lane, info.reset)

    def paused_for(self, lane: Lane) -> float:
        """Seconds the lane stays paused (0.0 when it is not)."""
        raw = self._redis.get(self._keys.lane_pause(lane.name))
        if raw is None:
            return 0.0
        return max(0.0, int(raw) / 1_000_000 - time.time())
