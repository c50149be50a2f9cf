"""``dispatcher schedule add|list`` as a user types them: refusals at add, times in the schedule's zone."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
import redis
from croniter import croniter

from tests.helpers import one_sentence_error, run, schedule_csv


@pytest.fixture()
def env(redis_url: str, redis_client: redis.Redis) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "DISPATCHER_KEY_PREFIX": "dsptest"}


def listed(env: dict[str, str]) -> list[dict[str, object]]:
    result = run(env, "schedule", "list", "--json")
    assert result.returncode == 0, result.stderr
    return list(orjson.loads(result.stdout))


@pytest.mark.slow
def test_adding_a_schedule_for_a_missing_file_is_refused_with_exit_2(env: dict[str, str], tmp_path: Path) -> None:
    result = run(env, "schedule", "add", "x", str(tmp_path / "nofile.csv"), "--every", "10m", "--text", "Hola",
                 "--from", "ACME")
    assert result.returncode == 2
    assert "nofile.csv" in one_sentence_error(result) and "saved" not in result.stdout
    assert listed(env) == []


@pytest.mark.slow
def test_adding_a_schedule_whose_text_names_a_missing_column_is_refused(env: dict[str, str],
                                                                        tmp_path: Path) -> None:
    result = run(env, "schedule", "add", "x", str(schedule_csv(tmp_path / "l.csv", 3)), "--every", "10m",
                 "--text", "Hola {surname}", "--from", "ACME")
    assert result.returncode == 2
    assert "{surname}" in one_sentence_error(result)
    assert listed(env) == []


@pytest.mark.slow
def test_schedule_list_shows_times_in_the_schedules_own_zone(env: dict[str, str], tmp_path: Path) -> None:
    added = run(env, "schedule", "add", "weekly", str(schedule_csv(tmp_path / "l.csv", 3)), "--cron", "0 9 * * MON",
                "--tz", "Europe/Madrid", "--text", "Hola {name}", "--from", "ACME")
    assert added.returncode == 0, added.stderr
    madrid = ZoneInfo("Europe/Madrid")
    expected = croniter("0 9 * * MON", datetime.now(madrid)).get_next(datetime)
    (row,) = listed(env)
    assert row["next_run_local"] == expected.isoformat(timespec="seconds")
    table = run({**env, "COLUMNS": "200"}, "schedule", "list")
    assert f"{expected:%Y-%m-%d} 09:00:00 {expected:%Z}" in table.stdout, table.stdout


@pytest.mark.slow
def test_an_interval_schedule_shows_its_real_next_run_during_its_first_interval(env: dict[str, str],
                                                                                tmp_path: Path) -> None:
    before = time.time()
    added = run(env, "schedule", "add", "often", str(schedule_csv(tmp_path / "l.csv", 3)), "--every", "10m",
                "--text", "Hola {name}", "--from", "ACME")
    assert added.returncode == 0, added.stderr
    (row,) = listed(env)
    assert before + 600 <= float(row["next_run"]) <= time.time() + 600  # type: ignore[arg-type]


def _with_current_campaign(env: dict[str, str], redis_client: redis.Redis, tmp_path: Path, name: str) -> str:
    """A schedule whose last firing's campaign is still queued (stored, not sent)."""
    from dispatcher.keys import Keys
    from dispatcher.sending.store import CampaignStore
    from tests.helpers import accented_frame as frame

    added = run(env, "schedule", "add", name, str(schedule_csv(tmp_path / "l.csv", 3)), "--cron", "0 9 * * *",
                "--tz", "Europe/Madrid", "--text", "Hola {name}", "--from", "ACME", "--window", "09:00-21:00")
    assert added.returncode == 0, added.stderr
    keys = Keys("dsptest")
    cid = CampaignStore(redis_client, keys).create("daily @ x", frame(3), window=4)
    redis_client.hset(keys.schedule(name), "last_campaign", cid)
    return cid


@pytest.mark.slow  # several CLI processes: seconds
def test_removing_a_schedule_with_cancel_current_cancels_its_unfinished_campaign(
        env: dict[str, str], redis_client: redis.Redis, tmp_path: Path) -> None:
    from dispatcher.keys import Keys
    from dispatcher.sending.store import CampaignStore

    cid = _with_current_campaign(env, redis_client, tmp_path, "daily")
    (row,) = listed(env)
    assert row["current_campaign"]["id"] == cid and row["window"] == "09:00-21:00"  # type: ignore[index]
    assert row["text"] == "Hola {name}" and row["sender"] == "ACME" and len(row["next_runs"]) == 5  # type: ignore[arg-type]
    removed = run(env, "schedule", "remove", "daily", "--cancel-current")
    assert removed.returncode == 0, removed.stderr
    assert f"campaign {cid} cancelled" in removed.stdout
    assert CampaignStore(redis_client, Keys("dsptest")).get(cid).state == "cancelled"
    assert listed(env) == []


@pytest.mark.slow  # several CLI processes: seconds
def test_removing_a_schedule_from_a_script_without_a_choice_keeps_its_campaign_and_says_so(
        env: dict[str, str], redis_client: redis.Redis, tmp_path: Path) -> None:
    from dispatcher.keys import Keys
    from dispatcher.sending.store import CampaignStore

    cid = _with_current_campaign(env, redis_client, tmp_path, "daily")
    removed = run(env, "schedule", "remove", "daily")
    assert removed.returncode == 0, removed.stderr
    assert cid in removed.stderr and "--cancel-current" in removed.stderr
    assert CampaignStore(redis_client, Keys("dsptest")).get(cid).state == "queued"
    both = run(env, "schedule", "remove", "daily", "--cancel-current", "--keep-current")
    assert both.returncode == 2 and "not both" in one_sentence_error(both)


@pytest.mark.slow  # several CLI processes: seconds
def test_a_paused_schedule_lists_no_next_run_and_resumes(env: dict[str, str], tmp_path: Path) -> None:
    added = run(env, "schedule", "add", "p", str(schedule_csv(tmp_path / "l.csv", 3)), "--every", "10m",
                "--text", "Hola {name}", "--from", "ACME")
    assert added.returncode == 0, added.stderr
    assert run(env, "schedule", "pause", "p").returncode == 0
    (row,) = listed(env)
    assert row["paused"] is True and row["next_run"] is None and row["next_runs"] == []
    assert "paused" in run({**env, "COLUMNS": "200"}, "schedule", "list").stdout
    assert run(env, "schedule", "resume", "p").returncode == 0
    (row,) = listed(env)
    assert row["paused"] is False and row["next_run"] is not None
