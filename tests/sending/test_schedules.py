"""Schedule decisions with an injected clock: due, missed, duplicate, overlap, refusal."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from dispatcher.errors import InputError
from dispatcher.instasent.client import InstasentClient
from dispatcher.keys import Keys
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.lifecycle import State
from dispatcher.sending.schedules import Firer, ScheduleDef, ScheduleStore
from dispatcher.sending.store import CampaignStore
from dispatcher.settings import Settings
from tests.sending.test_windows import Queue

T0 = datetime(2026, 11, 23, 9, 0, 20, tzinfo=UTC).timestamp()  # Monday 09:00:20 UTC


def recipients(path: Path, n: int = 120) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["phone", "name"])
        writer.writerows([f"+346{i:08d}", f"N{i}"] for i in range(n))
    return path


@pytest.fixture()
def firer(settings: Settings, redis_client: redis.Redis) -> Firer:
    keys = Keys(settings.key_prefix)
    return Firer(settings=settings, schedules=ScheduleStore(redis_client, keys),
                 store=CampaignStore(redis_client, keys), ops=BatchOps(redis_client, keys), enqueuer=Queue(),
                 client_factory=lambda: InstasentClient.from_settings(settings))


def define(firer: Firer, path: Path, **kwargs: object) -> ScheduleDef:
    base: dict[str, object] = {"name": "weekly", "file": str(path),
                               "options": {"text": "Hola {name}", "sender": "ACME", "hlr": False}}
    definition = ScheduleDef(**{**base, **kwargs}).validated()  # type: ignore[arg-type]
    firer.schedules.save(definition)
    return definition


def test_a_cron_firing_creates_a_campaign_named_after_the_schedule_and_time(firer: Firer, tmp_path: Path) -> None:
    define(firer, recipients(tmp_path / "l.csv"), cron="0 10 * * MON", tz="Europe/Madrid")
    firing = firer.fire("weekly", now=T0)
    assert firing is not None and firing.outcome == "created"
    info = firer.store.get(firing.campaign)
    assert info.name == "weekly @ 2026-11-23 10:00" and info.total == 120
    assert firer.fire("weekly", now=T0 + 30) is None  # the next tick: nothing is due
    assert firer.fire("weekly", now=T0 + 7 * 86400)  # next Monday


def test_a_firing_later_than_the_grace_period_is_recorded_as_missed(firer: Firer, tmp_path: Path) -> None:
    define(firer, recipients(tmp_path / "l.csv"), cron="0 10 * * MON", tz="Europe/Madrid", grace_s=600)
    firing = firer.fire("weekly", now=T0 + 3600)  # beat was down from 10:00 to 11:00 Madrid time
    assert firing is not None and firing.outcome == "missed" and "late" in firing.reason
    assert firer.store.recent() == []


def test_firings_skipped_while_beat_was_down_are_recorded_as_missed(firer: Firer, tmp_path: Path) -> None:
    define(firer, recipients(tmp_path / "l.csv"), every_s=60)
    assert firer.fire("weekly", now=T0).outcome == "created"  # type: ignore[union-attr]
    later = firer.fire("weekly", now=T0 + 600)
    assert later is not None and later.outcome in ("created", "skipped")
    outcomes = [r.outcome for r in firer.schedules.runs("weekly")]
    assert "missed" in outcomes and "9 firing(s) missed" in firer.schedules.runs("weekly")[1].reason


def test_the_same_due_time_never_fires_twice(firer: Firer, tmp_path: Path) -> None:
    define(firer, recipients(tmp_path / "l.csv"), cron="0 10 * * MON", tz="Europe/Madrid")
    firer.fire("weekly", now=T0)
    firer.schedules.set_state("weekly", last_due="")  # as if a second beat had not seen the first firing
    assert firer.fire("weekly", now=T0 + 1) is None
    assert len(firer.store.recent()) == 1


def test_an_overlapping_firing_is_skipped_and_recorded(firer: Firer, tmp_path: Path) -> None:
    define(firer, recipients(tmp_path / "l.csv"), every_s=60)
    first = firer.fire("weekly", now=T0)
    second = firer.fire("weekly", now=T0 + 60)  # the first campaign was never sent: still queued
    assert second is not None and second.outcome == "skipped" and first is not None
    assert first.campaign in second.reason


def test_an_overlapping_firing_can_queue_behind_the_running_one(firer: Firer, tmp_path: Path) -> None:
    define(firer, recipients(tmp_path / "l.csv"), every_s=60, overlap="queue")
    first = firer.fire("weekly", now=T0)
    second = firer.fire("weekly", now=T0 + 60)
    assert first is not None and second is not None and second.outcome == "waiting"
    queue: Queue = firer.enqueuer  # type: ignore[assignment]
    queued_before = list(queue.items)
    assert firer.start_queued() == []
    firer.store.transition(first.campaign, State.CANCELLED)
    assert firer.start_queued() == [second.campaign]
    assert {c for c, _ in queue.items} - {c for c, _ in queued_before} == {second.campaign}


def test_a_refused_firing_is_recorded_with_its_reason(firer: Firer, tmp_path: Path) -> None:
    define(firer, tmp_path / "missing.csv", every_s=60)
    firing = firer.fire("weekly", now=T0)
    assert firing is not None and firing.outcome == "refused"
    assert firer.schedules.runs("weekly")[0].reason


@pytest.mark.parametrize("changes", [{"cron": "nope"}, {"every_s": 0.5}, {"tz": "Mars/Base"}, {"overlap": "maybe"},
                                     {"cron": "0 9 * * *", "every_s": 60.0}, {"name": "bad name!"}])
def test_a_bad_definition_is_an_input_error(tmp_path: Path, changes: dict[str, object]) -> None:
    base: dict[str, object] = {"name": "ok", "file": "x.csv", "every_s": None, "cron": "0 9 * * *",
                               "options": {"text": "x", "sender": "ACME"}}
    with pytest.raises(InputError):
        ScheduleDef(**{**base, **changes}).validated()  # type: ignore[arg-type]
