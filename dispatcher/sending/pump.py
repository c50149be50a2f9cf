"""Keep enough bulk requests in flight to fill the rate limit, whatever the network's latency.

A worker that sends one batch at a time waits a round trip per batch: at 200 ms it cannot send
more than 5 bulks a second. The pump runs the batches of a task concurrently on one thread pool
per process and lets through, at once, about ``rate × latency × margin`` of them (Little's law):
the rate is the account's limit, the latency the POST round trip it observes (an exponentially
weighted mean), so the user never guesses a concurrency. The shared limiter in Redis still
spaces every request; the gate only keeps the number of waiting threads, claimed batches and
open connections near what the limit can use. A fixed ``in_flight`` (``dispatcher worker
--concurrency N``) replaces the estimate.

The gate lets batches through in the order their tasks arrived (first come, first served, a
task's batches one after another), not round-robin between tasks: every batch then waits about
as long as any other, so a campaign's share of the lane follows its share of the batches queued,
which is what its fair-share window sets (see :mod:`dispatcher.sending.fairshare`). One
exception: the task of a campaign the gate has not seen for ``FRESH_S`` seconds (one just
submitted, or resumed) goes first, so its first bulk does not wait behind the lane's queue.

Each batch goes through :func:`dispatcher.sending.attempt.send_batch`, unchanged: claims,
fencing, the ledger and pause/cancel (checked at every claim) behave as with one batch per task.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from dispatcher.instasent.client import InstasentClient
from dispatcher.instasent.models import BulkIds
from dispatcher.settings import Settings

T = TypeVar("T")

#: Most batches one process keeps in flight when the limit and the latency would ask for more.
CEILING = 64
#: Fewest batches in flight an automatic gate allows (a slow first answer must not stall the start).
FLOOR = 2
#: In flight = rate × latency × MARGIN: room for jitter in the round trips and the limiter's spacing.
MARGIN = 1.5
#: Latency assumed before the first answer (seconds): a transatlantic-ish guess, corrected at once.
FIRST_LATENCY_S = 0.25
#: Weight of a new round trip in the mean.
ALPHA = 0.2
#: Seconds without a batch of a campaign at the gate after which its next task goes first.
FRESH_S = 10.0
#: Longest round trip (seconds) the mean takes in: a timeout says nothing about the usual latency.
MAX_SAMPLE_S = 5.0


def requests_per_s(settings: Settings) -> float:
    """The bulk lane's request rate the account allows, in requests per second."""
    rate = settings.rate_limit_per_min / 60
    if settings.message_rate_per_s:
        # 100 messages per bulk request: a message cap may be the tighter one.
        rate = min(rate, settings.message_rate_per_s / 100)
    return rate


def in_flight_for(rate_per_s: float, latency_s: float, margin: float = MARGIN,
                  floor: int = FLOOR, ceiling: int = CEILING) -> int:
    """Requests to keep in flight to reach ``rate_per_s`` at ``latency_s`` seconds per round trip."""
    wanted = math.ceil(rate_per_s * latency_s * margin) + 1
    return max(floor, min(ceiling, wanted))


class Pump:
    """A thread pool with a gate that holds about ``rate × latency × margin`` batches in flight
    per lane (an organization's: each has its own limit, see :mod:`dispatcher.sending.tenancy`).

    A batch waiting for a slot of a busy lane holds its place in the gate while it sleeps; with
    one gate for all, the batches of one organization's crowded lane would hold every place and
    starve another organization's idle one. ``fixed`` > 0 pins each lane's gate to that many (no
    estimate). Thread-safe; one per process.
    """

    def __init__(self, rate_per_s: float, fixed: int = 0, ceiling: int = CEILING) -> None:
        self.rate_per_s = rate_per_s
        self.fixed = fixed
        self.ceiling = max(fixed, ceiling)
        self.latency_s = FIRST_LATENCY_S
        #: Batches in flight by lane.
        self._active: dict[str, int] = {}
        #: Each lane's queue: tickets of the calls waiting to pass, in the order they pass.
        self._queues: dict[str, deque[int]] = {}
        self._issued = 0
        #: key -> when (``time.monotonic()``) a ``map`` of it last came to the gate.
        self._seen: dict[str, float] = {}
        self._cond = threading.Condition()
        self._executor = ThreadPoolExecutor(max_workers=self.ceiling, thread_name_prefix="pump")

    @property
    def limit(self) -> int:
        """Batches let through at once right now."""
        if self.fixed:
            return self.fixed
        return in_flight_for(self.rate_per_s, self.latency_s, ceiling=self.ceiling)

    @property
    def waiting(self) -> int:
        """Calls waiting at the gate (of every lane)."""
        with self._cond:
            return sum(len(queue) for queue in self._queues.values())

    def observe(self, round_trip_s: float) -> None:
        """Fold one POST round trip (seconds) into the latency estimate."""
        sample = min(MAX_SAMPLE_S, max(0.0, round_trip_s))
        if self.fixed:
            self.latency_s += ALPHA * (sample - self.latency_s)
            return
        before = self.limit
        self.latency_s += ALPHA * (sample - self.latency_s)
        if self.limit > before:
            with self._cond:
                self._cond.notify_all()  # a longer latency opened the gate wider

    def map(self, fn: Callable[[int], T], numbers: Sequence[int], key: str | None = None,
            lane: str = "") -> list[Future[T]]:
        """Run ``fn(n)`` for every number, at most :attr:`limit` of ``lane`` at once across the process.

        Blocks until every call has passed the gate (not until they finish); returns their futures
        in order. The calls queue at the gate behind those of earlier ``map`` calls, except when
        ``key`` (a campaign id) has not been through the gate for :data:`FRESH_S` seconds: then
        they go first, so a campaign that just started sends its first bulk at once. A call's
        exception is kept in its future.
        """
        futures: list[Future[T]] = []
        with self._cond:
            tickets = list(range(self._issued, self._issued + len(numbers)))
            self._issued += len(numbers)
            now = time.monotonic()
            queue = self._queues.setdefault(lane, deque())
            if key is not None and now - self._seen.get(key, -FRESH_S) >= FRESH_S:
                queue.extendleft(reversed(tickets))
            else:
                queue.extend(tickets)
            if key is not None:
                self._remember(key, now)
        for i, n in enumerate(numbers):
            try:
                self._enter(lane, tickets[i])
            except BaseException:
                self._drop(lane, tickets[i:])
                raise
            try:
                futures.append(self._executor.submit(self._run, fn, n, lane))
            except BaseException:
                self._leave(lane)
                self._drop(lane, tickets[i + 1:])
                raise
        return futures

    def _remember(self, key: str, now: float) -> None:
        """Note that ``key`` went through the gate at ``now`` (the caller holds the lock)."""
        self._seen[key] = now
        if len(self._seen) > 1000:  # forget keys not seen lately: a process runs for months
            self._seen = {k: t for k, t in self._seen.items() if now - t < FRESH_S}

    def _run(self, fn: Callable[[int], T], n: int, lane: str) -> T:
        try:
            return fn(n)
        finally:
            self._leave(lane)

    def _enter(self, lane: str, ticket: int) -> None:
        with self._cond:
            while self._queues[lane][0] != ticket or self._active.get(lane, 0) >= self.limit:
                self._cond.wait(0.5)
            queue = self._queues[lane]
            queue.popleft()
            if not queue:
                del self._queues[lane]
            self._active[lane] = self._active.get(lane, 0) + 1
            self._cond.notify_all()  # the next ticket's holder may pass too, if there is room

    def _drop(self, lane: str, tickets: Sequence[int]) -> None:
        """Take the tickets of a ``map`` that failed out of its lane's queue, so the ones behind them move."""
        if not tickets:
            return
        with self._cond:
            gone = set(tickets)
            left = deque(t for t in self._queues.get(lane, ()) if t not in gone)
            if left:
                self._queues[lane] = left
            else:
                self._queues.pop(lane, None)
            self._cond.notify_all()

    def _leave(self, lane: str) -> None:
        with self._cond:
            left = self._active[lane] - 1
            if left:
                self._active[lane] = left
            else:
                del self._active[lane]
            self._cond.notify_all()  # only the holder of the next ticket (in each lane) goes on

    def shutdown(self) -> None:
        """Stop the threads once the calls in progress finish."""
        self._executor.shutdown(wait=True)


class TimedClient(InstasentClient):
    """An Instasent client that reports every successful bulk round trip to ``on_round_trip``."""

    on_round_trip: Callable[[float], None] | None = None

    def send_bulk_wire(self, items: Sequence[dict[str, Any]], deadline: float | None = None) -> BulkIds:
        """``POST /sms/bulk`` (see :meth:`InstasentClient.send_bulk_wire`), timed."""
        started = time.perf_counter()
        result = super().send_bulk_wire(items, deadline=deadline)
        if self.on_round_trip is not None:
            self.on_round_trip(time.perf_counter() - started)
        return result
