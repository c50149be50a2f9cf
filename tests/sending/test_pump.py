"""The pump keeps about rate x latency batches in flight, and never more than its gate allows."""

from __future__ import annotations

import threading

from dispatcher.sending.pump import CEILING, FLOOR, Pump, in_flight_for, requests_per_s
from dispatcher.settings import Settings
from tests.helpers import wait_until


def test_in_flight_follows_the_rate_and_the_latency() -> None:
    assert in_flight_for(100.0, 0.2) == 31  # 6,000/min at 200 ms: 20 in flight, x1.5, +1
    assert in_flight_for(20.0, 0.5) == 16  # 1,200/min at 500 ms
    assert in_flight_for(100.0, 0.0) == FLOOR
    assert in_flight_for(10_000.0, 1.0) == CEILING


def test_a_message_cap_tighter_than_the_request_limit_sets_the_rate() -> None:
    settings = Settings(rate_limit_per_min=6000, message_rate_per_s=2000.0)
    assert requests_per_s(settings) == 20.0  # 2,000 messages/s in bulks of 100
    assert requests_per_s(Settings(rate_limit_per_min=6000)) == 100.0


def test_observed_round_trips_widen_the_gate_and_a_timeout_is_capped() -> None:
    pump = Pump(rate_per_s=100.0)
    try:
        for _ in range(50):
            pump.observe(0.01)
        narrow = pump.limit
        for _ in range(50):
            pump.observe(0.4)
        assert narrow < pump.limit <= CEILING
        pump.observe(1e6)
        assert pump.latency_s < 5.1
    finally:
        pump.shutdown()


def test_a_fixed_gate_never_lets_more_batches_run_at_once() -> None:
    pump = Pump(rate_per_s=1e6, fixed=2)
    release = threading.Event()
    running: list[int] = []
    peak = 0
    lock = threading.Lock()

    def work(n: int) -> int:
        nonlocal peak
        with lock:
            running.append(n)
            peak = max(peak, len(running))
        release.wait(10)
        with lock:
            running.remove(n)
        return n * 10

    results: list[int] = []
    feeder = threading.Thread(target=lambda: results.extend(f.result() for f in pump.map(work, range(6))))
    feeder.start()
    try:
        wait_until(lambda: len(running) >= 2, 10, "two tasks running", interval_s=0.01)
        assert len(running) == 2
        release.set()
        feeder.join(10)
        assert results == [0, 10, 20, 30, 40, 50]
        assert peak == 2
    finally:
        release.set()
        pump.shutdown()


def test_an_exception_stays_in_its_future_and_frees_its_place() -> None:
    pump = Pump(rate_per_s=1e6, fixed=1)
    try:
        def work(n: int) -> int:
            if n == 0:
                raise ValueError("boom")
            return n

        futures = pump.map(work, [0, 1])
        assert isinstance(futures[0].exception(10), ValueError)
        assert futures[1].result(10) == 1
    finally:
        pump.shutdown()


def test_a_full_gate_of_one_organizations_lane_lets_another_organizations_batches_through() -> None:
    pump = Pump(rate_per_s=1e6, fixed=2)
    release = threading.Event()
    try:
        crowded = pump.map(lambda n: release.wait(10), range(2), lane="acme")  # the acme gate is full
        done = pump.map(lambda n: n, range(3), lane="beta")  # returns: beta has places of its own
        assert [f.result(timeout=5) for f in done] == [0, 1, 2]
        assert not any(f.done() for f in crowded)
    finally:
        release.set()
        pump.shutdown()


def test_the_gate_lets_tasks_through_in_arrival_order_and_a_new_campaigns_first() -> None:
    pump = Pump(1.0, fixed=1)
    release = threading.Event()
    order: list[int] = []

    def send(n: int) -> int:
        order.append(n)
        if n == 0:
            release.wait(10)
        return n

    def mapping(numbers: list[int], key: str) -> threading.Thread:
        thread = threading.Thread(target=pump.map, args=(send, numbers), kwargs={"key": key})
        thread.start()
        return thread

    threads = [mapping([0], "a")]
    wait_until(lambda: order == [0], 5, "the first batch to hold the only place")
    for numbers, key, waiting in (([1, 2], "a", 2), ([3, 4], "b", 4), ([5], "a", 5)):
        threads.append(mapping(numbers, key))
        wait_until(lambda w=waiting: pump.waiting == w, 5, "the task to queue at the gate")
    release.set()
    for thread in threads:
        thread.join(10)
    wait_until(lambda: len(order) == 6, 5, "every batch to run")  # map returns once they passed the gate
    # "a" was seen: its second task waits its turn; "b" is new: it goes first; "a" again: last.
    assert order == [0, 3, 4, 1, 2, 5]
