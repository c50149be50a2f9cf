"""Recurring schedules with real beat and worker processes, real Redis and the sandbox."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from dispatcher.dev.services import Service, start_beat
from dispatcher.keys import Keys
from dispatcher.sending.schedules.store import Firing, ScheduleStore
from dispatcher.sending.store import CampaignStore
from dispatcher.settings import Settings
from tests.helpers import Harness, SandboxHandle, run, schedule_csv, wait_until, worker_env

pytestmark = pytest.mark.slow


@pytest.fixture()
def harness(settings: Settings, redis_client: redis.Redis, sandbox: SandboxHandle) -> Iterator[Harness]:
    h = Harness(settings, redis_client, sandbox)
    h.start_worker()
    yield h
    h.stop()


@pytest.fixture()
def beats(harness: Harness) -> Iterator[Callable[[], Service]]:
    started: list[Service] = []

    def start() -> Service:
        service = start_beat(worker_env(harness.settings))
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


def schedules(h: Harness) -> ScheduleStore:
    return ScheduleStore(h.store.redis, Keys(h.settings.key_prefix))


def add(h: Harness, path: Path, name: str, *options: str) -> None:
    result = run(worker_env(h.settings), "schedule", "add", name, str(path), "--text", "Hola {name}", "--from",
                 "ACME", "--no-hlr", *options)
    assert result.returncode == 0, result.stderr


def runs_until(h: Harness, name: str, done: Callable[[list[Firing]], bool], timeout_s: float = 40) -> list[Firing]:
    def reached() -> list[Firing] | None:
        runs = schedules(h).runs(name)
        return runs if done(runs) else None

    return wait_until(reached, timeout_s, lambda: f"schedule {name}: {schedules(h).runs(name)}", interval_s=0.2)


def created(runs: list[Firing]) -> list[Firing]:
    return sorted((r for r in runs if r.outcome == "created"), key=lambda r: r.at)


def test_an_every_schedule_fires_on_time_and_each_firing_is_a_campaign_that_completes(
        harness: Harness, beats: Callable[[], Service], tmp_path: Path) -> None:
    add(harness, schedule_csv(tmp_path / "l.csv", 150), "often", "--every", "3s")
    beats()
    runs = created(runs_until(harness, "often", lambda r: len(created(r)) >= 3))
    gaps = [b.at - a.at for a, b in itertools.pairwise(runs)]
    detail = [(round(r.at - runs[0].at, 2), round((r.due or 0) - runs[0].at, 2), r.outcome, r.reason)
              for r in schedules(harness).runs("often")]
    assert all(1.5 <= g <= 5.5 for g in gaps), (gaps, detail)  # every 3 s, give or take a loaded machine
    store: CampaignStore = harness.store
    ids = [r.campaign for r in runs]
    assert len(set(ids)) == len(ids)
    for cid in ids[:2]:
        info = harness.wait(cid, lambda i: i.state == "completed")
        assert info.counts["sent"] == 150 and info.name.startswith("often @ ")
    assert store.get(ids[0]).created_at < store.get(ids[1]).created_at


def test_editing_and_removing_a_schedule_take_effect_without_a_restart(
        harness: Harness, beats: Callable[[], Service], tmp_path: Path) -> None:
    path = schedule_csv(tmp_path / "l.csv", 10)
    # An interval schedule first fires one interval after it is saved. 15 s, not longer, to keep the
    # wait short; not shorter, so the old interval alone could not give three firings within the
    # 20 s allowed after the edit (15, 30, 45 s after saving).
    add(harness, path, "edit", "--every", "15s")
    beats()
    runs_until(harness, "edit", lambda r: len(created(r)) >= 1)
    add(harness, path, "edit", "--every", "1s")  # edited: now every second
    runs_until(harness, "edit", lambda r: len(created(r)) + sum(x.outcome == "skipped" for x in r) >= 3,
               timeout_s=20)
    assert run(worker_env(harness.settings), "schedule", "remove", "edit").returncode == 0
    time.sleep(1.5)  # let a firing already in the queue land
    count = len(harness.store.recent(100))
    time.sleep(3)
    assert len(harness.store.recent(100)) == count


def test_two_beats_started_together_do_not_fire_a_schedule_twice(
        harness: Harness, beats: Callable[[], Service], tmp_path: Path) -> None:
    add(harness, schedule_csv(tmp_path / "l.csv", 5), "twice", "--every", "1s", "--overlap", "queue")
    started = time.time()
    beats()
    beats()
    time.sleep(6)
    runs = [r for r in schedules(harness).runs("twice") if r.outcome != "missed"]
    elapsed = time.time() - started
    dues = [r.due for r in runs]
    assert len(dues) == len(set(dues)), "one due time fired twice"
    assert 3 <= len(runs) <= elapsed + 1


def test_an_overlapping_firing_is_skipped_and_a_missed_one_is_recorded(
        harness: Harness, beats: Callable[[], Service], tmp_path: Path) -> None:
    harness.sandbox.faults(latency_ms=300)  # 30 batches: about 5 s with two processes
    add(harness, schedule_csv(tmp_path / "l.csv", 3000), "slow", "--every", "1s")
    beats()
    runs = runs_until(harness, "slow", lambda r: any(x.outcome == "skipped" for x in r))
    skipped = next(r for r in runs if r.outcome == "skipped")
    assert "still running" in skipped.reason
    # Beat "was down" for an hour: the next trigger finds 3,600 due times it never fired.
    schedules(harness).set_state("slow", last_due=time.time() - 3600)
    runs = runs_until(harness, "slow", lambda r: any(x.outcome == "missed" for x in r))
    missed = next(r for r in runs if r.outcome == "missed")
    assert "missed while beat was not running" in missed.reason
    listed = run(worker_env(harness.settings), "schedule", "list", "--json")
    assert listed.returncode == 0 and '"name":"slow"' in listed.stdout and '"next_run"' in listed.stdout


def test_a_schedule_run_by_hand_leaves_the_beat_firings_on_their_ladder(
        harness: Harness, beats: Callable[[], Service], tmp_path: Path) -> None:
    # Issue 22: a hand run moved the schedule's anchor, so the next beat firing recorded nothing
    # and every later one came as late as the hand run was off the ladder.
    path = schedule_csv(tmp_path / "l.csv", 5)
    add(harness, path, "steady", "--every", "4s", "--overlap", "queue")
    beats()
    first = runs_until(harness, "steady", lambda r: len([x for x in r if x.due is not None]) >= 1)
    anchor = min(float(x.due) for x in first if x.due is not None)
    time.sleep(1.3)  # off the ladder by more than a second
    manual = run(worker_env(harness.settings), "schedule", "run", "steady", "--json")
    assert manual.returncode == 0, manual.stderr
    hand = time.time()
    runs = runs_until(harness, "steady", lambda r: sum(x.at > hand and x.outcome != "missed" for x in r) >= 2,
                      timeout_s=30)
    later = [x for x in runs if x.at > hand]
    assert later and all(x.outcome in ("created", "waiting") for x in later), [x.to_json() for x in runs]
    for firing in later:  # due times stay k x 4 s after the first one, not after the hand run
        assert firing.due is not None
        steps = (float(firing.due) - anchor) / 4
        assert abs(steps - round(steps)) < 0.01, (firing.to_json(), anchor)
    state = schedules(harness).state("steady")
    assert abs((float(state["last_due"]) - anchor) / 4 - round((float(state["last_due"]) - anchor) / 4)) < 0.01
