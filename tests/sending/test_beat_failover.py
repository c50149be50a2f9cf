"""Beat across a Redis failover (issue 23), with real processes: two beats (celery-redbeat) and a
worker on the ``redis+sentinel://`` URL of a master, two replicas and three sentinels on loopback,
and a schedule due every two seconds. The master is SIGKILLed between firings and comes back as a
replica: redbeat's lock, which lives in the data set, moves with it (one beat keeps firing, the
other keeps waiting), no due time fires twice, every firing is one campaign, and the schedule
keeps firing after the switch. And a beat started while the master is down waits for the
promotion instead of dying."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatcher.dev.ha import HighAvailability, start_ha
from dispatcher.dev.services import Service, start_beat
from dispatcher.keys import Keys
from dispatcher.resources import connect_redis
from dispatcher.sending.schedules.store import Firing, ScheduleStore
from dispatcher.settings import Settings
from tests.helpers import SANDBOX_TOKEN, Harness, SandboxHandle, run, schedule_csv, wait_through_restarts, worker_env

pytestmark = pytest.mark.slow

NAME = "often"
#: Outcomes of a firing that created a campaign (``waiting``: queued behind the previous run).
CREATING = ("created", "waiting")


@pytest.fixture()
def ha() -> Iterator[HighAvailability]:
    with start_ha() as servers:
        yield servers


def creating(runs: list[Firing]) -> list[Firing]:
    return [r for r in runs if r.outcome in CREATING]


def test_a_schedule_fires_once_per_due_time_across_a_failover_and_keeps_firing_after_it(
        ha: HighAvailability, sandbox: SandboxHandle, tmp_path: Path) -> None:
    settings = Settings.from_env(environ={}, env_file=None).with_overrides(
        instasent_token=SANDBOX_TOKEN, instasent_base_url=sandbox.url, redis_url=ha.url(),
        key_prefix=f"dspbeatha{secrets.token_hex(2)}", queue_name=f"dispatcher-test-{secrets.token_hex(4)}",
        rate_limit_per_min=600000, redis_min_replicas=1)
    client = connect_redis(ha.url())
    h = Harness(settings, client, sandbox)
    env = worker_env(settings, DISPATCHER_QUEUE=settings.queue_name, DISPATCHER_ALLOW_VOLATILE_REDIS="0",
                     DISPATCHER_REDIS_MIN_REPLICAS="1", DISPATCHER_WATCHDOG_EVERY="1")
    schedules = ScheduleStore(client, Keys(settings.key_prefix))
    beats: list[Service] = []
    try:
        h.start_worker(**env)
        added = run(env, "schedule", "add", NAME, str(schedule_csv(tmp_path / "l.csv", 5)), "--text", "Hola {name}",
                    "--from", "ACME", "--no-hlr", "--every", "2s", "--overlap", "queue")
        assert added.returncode == 0, added.stderr
        beats += [start_beat(env), start_beat(env)]  # one holds redbeat's lock, the other waits for it
        wait_through_restarts(lambda: len(creating(schedules.runs(NAME))) >= 2, 40, "two firings before the kill")
        old = ha.kill_master()
        ha.wait_for_failover(old)
        switched = time.time()
        ha.restart(old)
        after = wait_through_restarts(
            lambda: (runs := creating(schedules.runs(NAME))) and sum(r.at > switched for r in runs) >= 3 and runs,
            60, lambda: f"three firings after the switch: {[r.to_json() for r in schedules.runs(NAME)]}\n"
                        + "\n".join(b.log_tail(20) for b in beats))
        assert all(b.alive() for b in beats), "\n".join(b.log_tail(40) for b in beats)
        runs = [r for r in schedules.runs(NAME) if r.due is not None and r.outcome != "missed"]
        dues = [r.due for r in runs]
        assert len(dues) == len(set(dues)), f"a due time fired twice: {[r.to_json() for r in runs]}"
        campaigns = {c.id: c for c in h.store.recent(100) if c.name.startswith(f"{NAME} @ ")}
        fired = {r.campaign for r in creating(schedules.runs(NAME))}
        assert len(fired) == len(creating(schedules.runs(NAME)))  # one campaign per firing
        assert fired <= campaigns.keys(), "a firing without its campaign"
        # A firing's record is written after its campaign: only a write lost with the old master
        # (asynchronous replication) can leave a campaign without one, and only from before the switch.
        unaccounted = [c for c in campaigns.keys() - fired if campaigns[c].created_at >= switched]
        assert not unaccounted, f"campaigns no firing accounts for: {unaccounted}"
        assert len(after) >= 5
        # The lock moved with the data set: the beat that fires still holds it on the new master.
        assert client.exists(f"{Keys(settings.key_prefix).redbeat_prefix()}::lock")
    finally:
        for beat in beats:
            beat.stop()
        h.stop()


def test_a_beat_started_while_the_master_is_down_waits_for_the_promotion_and_takes_the_lock(
        ha: HighAvailability, sandbox: SandboxHandle) -> None:
    # Celery builds the scheduler after "beat: Starting", and redbeat then writes to Redis: a beat
    # started during a switch used to die there.
    settings = Settings.from_env(environ={}, env_file=None).with_overrides(
        instasent_token=SANDBOX_TOKEN, instasent_base_url=sandbox.url, redis_url=ha.url(),
        key_prefix=f"dspbeatha{secrets.token_hex(2)}")
    old = ha.kill_master()
    beat = start_beat(worker_env(settings, DISPATCHER_ALLOW_VOLATILE_REDIS="0"))
    try:
        ha.wait_for_failover(old)
        wait_through_restarts(lambda: "Acquired lock" in beat.log_tail(400) or not beat.alive(), 60,
                              "the beat to take redbeat's lock")
        assert beat.alive(), beat.log_tail(60)
        assert connect_redis(ha.url()).exists(f"{Keys(settings.key_prefix).redbeat_prefix()}::lock")
    finally:
        beat.stop()
