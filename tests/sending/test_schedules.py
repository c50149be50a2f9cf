"""Schedule decisions with an injected clock: due, missed, duplicate, overlap, refusal."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from dispatcher.errors import InputError, StoreUnavailable
from dispatcher.instasent.client import InstasentClient
from dispatcher.keys import Keys
from dispatcher.schema.names import State
from dispatcher.sending import loading
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.schedules.definition import ScheduleDef
from dispatcher.sending.schedules.firing import Firer
from dispatcher.sending.schedules.store import ScheduleStore
from dispatcher.sending.store import CampaignStore
from dispatcher.settings import Settings
from tests.helpers import Queue, schedule_csv

T0 = datetime(2026, 11, 23, 9, 0, 20, tzinfo=UTC).timestamp()  # Monday 09:00:20 UTC


class Hooked(Queue):
    """A queue that runs ``hook(campaign_id)`` at its first enqueue: after the first chunk is
    stored, while the campaign still loads."""

    def __init__(self, hook: Callable[[str], None]) -> None:
        super().__init__()
        self.hook: Callable[[str], None] | None = hook

    def enqueue(self, campaign_id: str, numbers: Sequence[int]) -> None:
        super().enqueue(campaign_id, numbers)
        hook, self.hook = self.hook, None
        if hook is not None:
            hook(campaign_id)


@pytest.fixture()
def firer(settings: Settings, redis_client: redis.Redis) -> Firer:
    keys = Keys(settings.key_prefix)
    return Firer(settings=settings, schedules=ScheduleStore(redis_client, keys),
                 store=CampaignStore(redis_client, keys), ops=BatchOps(redis_client, keys), enqueuer=Queue(),
                 client_factory=lambda: InstasentClient.from_settings(settings))


def define(firer: Firer, path: Path, saved_at: float = T0 - 86400, **kwargs: object) -> ScheduleDef:
    """Save a schedule as if added at ``saved_at`` (default: the day before T0)."""
    base: dict[str, object] = {"name": "weekly", "file": str(path),
                               "options": {"text": "Hola {name}", "sender": "ACME", "hlr": False}}
    definition = ScheduleDef(**{**base, **kwargs}).validated()  # type: ignore[arg-type]
    firer.schedules.save(definition, now=saved_at)
    return definition


def test_a_cron_firing_creates_a_campaign_named_after_the_schedule_and_time(firer: Firer, tmp_path: Path) -> None:
    define(firer, schedule_csv(tmp_path / "l.csv"), cron="0 10 * * MON", tz="Europe/Madrid")
    firing = firer.fire("weekly", now=T0)
    assert firing is not None and firing.outcome == "created"
    info = firer.store.get(firing.campaign)
    assert info.name == "weekly @ 2026-11-23 10:00" and info.total == 120
    assert firer.fire("weekly", now=T0 + 30) is None  # the next tick: nothing is due
    assert firer.fire("weekly", now=T0 + 7 * 86400)  # next Monday


def test_a_firing_later_than_the_grace_period_is_recorded_as_missed(firer: Firer, tmp_path: Path) -> None:
    define(firer, schedule_csv(tmp_path / "l.csv"), cron="0 10 * * MON", tz="Europe/Madrid", grace_s=600)
    firing = firer.fire("weekly", now=T0 + 3600)  # beat was down from 10:00 to 11:00 Madrid time
    assert firing is not None and firing.outcome == "missed" and "late" in firing.reason
    assert firer.store.recent() == []


def test_firings_skipped_while_beat_was_down_are_recorded_as_missed(firer: Firer, tmp_path: Path) -> None:
    define(firer, schedule_csv(tmp_path / "l.csv"), every_s=60)
    assert firer.fire("weekly", now=T0).outcome == "created"  # type: ignore[union-attr]
    later = firer.fire("weekly", now=T0 + 600)
    assert later is not None and later.outcome in ("created", "skipped")
    outcomes = [r.outcome for r in firer.schedules.runs("weekly")]
    assert "missed" in outcomes and "9 firing(s) missed" in firer.schedules.runs("weekly")[1].reason


def test_the_same_due_time_never_fires_twice(firer: Firer, tmp_path: Path) -> None:
    define(firer, schedule_csv(tmp_path / "l.csv"), cron="0 10 * * MON", tz="Europe/Madrid")
    firer.fire("weekly", now=T0)
    firer.schedules.set_state("weekly", last_due="")  # as if a second beat had not seen the first firing
    assert firer.fire("weekly", now=T0 + 1) is None
    assert len(firer.store.recent()) == 1


def test_an_overlapping_firing_is_skipped_and_recorded(firer: Firer, tmp_path: Path) -> None:
    define(firer, schedule_csv(tmp_path / "l.csv"), every_s=60)
    first = firer.fire("weekly", now=T0)
    second = firer.fire("weekly", now=T0 + 60)  # the first campaign was never sent: still queued
    assert second is not None and second.outcome == "skipped" and first is not None
    assert first.campaign in second.reason


def test_an_overlapping_firing_can_queue_behind_the_running_one(firer: Firer, tmp_path: Path) -> None:
    define(firer, schedule_csv(tmp_path / "l.csv"), every_s=60, overlap="queue")
    first = firer.fire("weekly", now=T0)
    second = firer.fire("weekly", now=T0 + 60)
    assert first is not None and second is not None and second.outcome == "waiting"
    queue: Queue = firer.enqueuer  # type: ignore[assignment]
    queued_before = list(queue.items)
    assert firer.start_queued() == []
    firer.store.transition(first.campaign, State.CANCELLED)
    assert firer.start_queued() == [second.campaign]
    assert {c for c, _ in queue.items} - {c for c, _ in queued_before} == {second.campaign}


def test_every_firing_held_behind_a_running_one_starts_in_turn_and_none_is_left_queued(
        firer: Firer, tmp_path: Path) -> None:
    define(firer, schedule_csv(tmp_path / "l.csv"), every_s=60, overlap="queue")
    first, second, third = (firer.fire("weekly", now=T0 + 60 * i) for i in range(3))
    assert first is not None and second is not None and third is not None
    assert (second.outcome, third.outcome) == ("waiting", "waiting")
    assert first.campaign in second.reason and second.campaign in third.reason
    queue: Queue = firer.enqueuer  # type: ignore[assignment]
    queued = lambda: {c for c, _ in queue.items}  # noqa: E731
    assert firer.start_queued() == [] and queued() == {first.campaign}
    firer.store.transition(first.campaign, State.CANCELLED)
    assert firer.start_queued() == [second.campaign]  # the third waits for the second
    assert queued() == {first.campaign, second.campaign}
    fourth = firer.fire("weekly", now=T0 + 180)
    assert fourth is not None and fourth.outcome == "waiting" and third.campaign in fourth.reason
    firer.store.transition(second.campaign, State.CANCELLED)
    assert firer.start_queued() == [third.campaign]
    firer.store.transition(third.campaign, State.CANCELLED)
    assert firer.start_queued() == [fourth.campaign]
    assert firer.schedules.held("weekly") == [] and firer.start_queued() == []
    assert queued() == {first.campaign, second.campaign, third.campaign, fourth.campaign}


def test_a_held_campaign_that_expired_meanwhile_is_passed_over(firer: Firer, tmp_path: Path) -> None:
    define(firer, schedule_csv(tmp_path / "l.csv"), every_s=60, overlap="queue")
    first, second, third = (firer.fire("weekly", now=T0 + 60 * i) for i in range(3))
    assert first is not None and second is not None and third is not None
    firer.store.transition(second.campaign, State.CANCELLED)
    firer.store.redis.delete(firer.store.keys.campaign(second.campaign))  # its keys ran out after the cancel
    firer.store.transition(first.campaign, State.CANCELLED)
    assert firer.start_queued() == [third.campaign]


def test_a_refused_firing_is_recorded_with_its_reason(firer: Firer, tmp_path: Path) -> None:
    define(firer, tmp_path / "missing.csv", every_s=60)
    firing = firer.fire("weekly", now=T0)
    assert firing is not None and firing.outcome == "refused"
    assert firer.schedules.runs("weekly")[0].reason
    recorded = firer.schedules.runs("weekly")[0]
    assert (recorded.outcome, recorded.reason) == ("refused", firing.reason)
    assert "missing.csv" in recorded.reason and "No such file" in recorded.reason  # what and why
    assert firer.store.recent() == []  # and nothing was created


def test_a_firing_whose_list_leaves_nothing_to_send_is_refused(firer: Firer, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("phone,name\n12345,a\nnot a phone,b\n")
    define(firer, path, every_s=60)
    firing = firer.fire("weekly", now=T0)
    assert firing is not None and firing.outcome == "refused" and "no row of bad.csv" in firing.reason
    assert firer.store.recent() == []


@pytest.mark.parametrize("changes", [{"cron": "nope"}, {"every_s": 0.5}, {"tz": "Mars/Base"}, {"overlap": "maybe"},
                                     {"cron": "0 9 * * *", "every_s": 60.0}, {"name": "bad name!"}])
def test_a_bad_definition_is_an_input_error(tmp_path: Path, changes: dict[str, object]) -> None:
    base: dict[str, object] = {"name": "ok", "file": "x.csv", "every_s": None, "cron": "0 9 * * *",
                               "options": {"text": "x", "sender": "ACME"}}
    with pytest.raises(InputError):
        ScheduleDef(**{**base, **changes}).validated()  # type: ignore[arg-type]


MONDAY_16_17 = datetime(2026, 11, 23, 16, 17, 0, tzinfo=UTC).timestamp()


def test_a_cron_schedule_added_after_its_due_time_is_not_missed_but_waits_for_the_next(
        firer: Firer, tmp_path: Path) -> None:
    # `0 9 * * MON` in Madrid added on a Monday at 16:17 UTC: this morning's 09:00 predates it.
    define(firer, schedule_csv(tmp_path / "l.csv"), saved_at=MONDAY_16_17, cron="0 9 * * MON", tz="Europe/Madrid")
    assert firer.fire("weekly", now=MONDAY_16_17 + 30) is None
    assert firer.fire("weekly", now=MONDAY_16_17 + 3600) is None  # every tick until next Monday is quiet
    assert firer.schedules.runs("weekly") == []
    next_monday = datetime(2026, 11, 30, 8, 0, 5, tzinfo=UTC).timestamp()  # 09:00:05 in Madrid
    firing = firer.fire("weekly", now=next_monday)
    assert firing is not None and firing.outcome == "created"
    assert [r.outcome for r in firer.schedules.runs("weekly")] == ["created"]


def test_an_edit_does_not_make_the_new_cron_look_late(firer: Firer, tmp_path: Path) -> None:
    path = schedule_csv(tmp_path / "l.csv")
    define(firer, path, cron="0 10 * * MON", tz="Europe/Madrid")
    first = firer.fire("weekly", now=T0)
    assert first is not None and first.outcome == "created"
    firer.store.transition(first.campaign, State.CANCELLED)  # not still sending when the next one is due
    # Edited at 16:17 to 08:00 daily: today's 08:00 came before the edit, so it is neither fired nor missed.
    define(firer, path, saved_at=MONDAY_16_17, cron="0 8 * * *", tz="Europe/Madrid")
    assert firer.fire("weekly", now=MONDAY_16_17 + 30) is None
    tuesday = datetime(2026, 11, 24, 7, 0, 5, tzinfo=UTC).timestamp()
    assert firer.fire("weekly", now=tuesday).outcome == "created"  # type: ignore[union-attr]
    assert "missed" not in [r.outcome for r in firer.schedules.runs("weekly")]


def test_cron_firings_missed_after_the_schedule_was_added_still_count(firer: Firer, tmp_path: Path) -> None:
    define(firer, schedule_csv(tmp_path / "l.csv"), saved_at=T0 - 8 * 86400, cron="0 10 * * MON", tz="Europe/Madrid")
    firing = firer.fire("weekly", now=T0)  # beat was down for the Monday before: one missed
    assert firing is not None and firing.outcome == "created"
    assert "1 firing(s) missed" in firer.schedules.runs("weekly")[1].reason


def test_an_interval_schedule_is_next_due_one_interval_after_it_was_added(firer: Firer, tmp_path: Path) -> None:
    definition = define(firer, schedule_csv(tmp_path / "l.csv"), saved_at=T0, every_s=600)
    assert definition.next_due(T0 + 10, None, since=T0) == T0 + 600
    assert definition.next_due(T0 + 599, None, since=T0) == T0 + 600


def test_a_firing_streams_its_list_and_a_tick_while_it_loads_sees_it_running(firer: Firer, tmp_path: Path) -> None:
    define(firer, schedule_csv(tmp_path / "l.csv"), every_s=60)
    during: list[object] = []

    def tick(campaign_id: str) -> None:
        during.append(loading.progress(firer.store, campaign_id))
        during.append(firer.fire("weekly", now=T0 + 60))

    firer.enqueuer = Hooked(tick)
    first = firer.fire("weekly", now=T0)
    assert first is not None and first.outcome == "created" and first.reason == ""
    load, second = during
    assert isinstance(load, loading.LoadProgress) and load.loading and not load.interrupted  # sent while loading
    assert isinstance(second, type(first)) and second.outcome == "skipped" and first.campaign in second.reason
    assert loading.progress(firer.store, first.campaign) is None and firer.store.get(first.campaign).total == 120
    assert len(firer.store.recent()) == 1


def test_a_firing_whose_loading_breaks_off_is_an_error_naming_the_campaign_to_resume(
        firer: Firer, tmp_path: Path) -> None:
    define(firer, schedule_csv(tmp_path / "l.csv"), every_s=60)

    def redis_goes(campaign_id: str) -> None:
        raise StoreUnavailable("Redis is unreachable.")

    firer.enqueuer = Hooked(redis_goes)
    firing = firer.fire("weekly", now=T0)
    assert firing is not None and firing.outcome == "error" and firing.campaign
    assert f"dispatcher resume {firing.campaign}" in firing.reason and "Redis is unreachable" in firing.reason
    load = loading.progress(firer.store, firing.campaign)
    assert load is not None and load.interrupted  # says so, and the next tick does not start another
    later = firer.fire("weekly", now=T0 + 60)
    assert later is not None and later.outcome == "skipped" and firing.campaign in later.reason


def test_a_run_by_hand_leaves_an_interval_schedules_next_timed_firing_due_on_its_ladder(
        firer: Firer, tmp_path: Path) -> None:
    define(firer, schedule_csv(tmp_path / "l.csv"), every_s=60, overlap="queue")
    assert firer.fire("weekly", now=T0).outcome == "created"  # type: ignore[union-attr]
    hand = firer.fire("weekly", now=T0 + 20, manual=True)
    assert hand is not None and hand.outcome in ("created", "waiting")
    assert float(firer.schedules.state("weekly")["last_due"]) == T0  # the anchor did not move
    timed = firer.fire("weekly", now=T0 + 60.5)
    assert timed is not None and timed.due == T0 + 60 and timed.outcome in ("created", "waiting")


def test_a_paused_schedule_records_one_skip_and_fires_again_once_resumed(firer: Firer, tmp_path: Path) -> None:
    define(firer, schedule_csv(tmp_path / "l.csv"), every_s=60, overlap="queue")
    firer.schedules.set_paused("weekly", True)
    first = firer.fire("weekly", now=T0)
    assert first is not None and (first.outcome, first.reason) == ("skipped", "the schedule is paused")
    assert firer.fire("weekly", now=T0 + 60) is not None
    assert [r.reason for r in firer.schedules.runs("weekly")] == ["the schedule is paused"]  # one record
    assert firer.store.recent() == []
    firer.schedules.set_paused("weekly", False)
    assert firer.fire("weekly", now=T0 + 120).outcome == "created"  # type: ignore[union-attr]
