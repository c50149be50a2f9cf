"""Fair share within a lane: queue windows by priority, their rebalancing, the recorded shares, and
real workers splitting one account's limit by weight (``dispatcher.sending.fairshare``)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from dispatcher.dev.services import start_worker
from dispatcher.errors import InputError
from dispatcher.keys import Keys
from dispatcher.schema.names import State
from dispatcher.sending import campaigns, fairshare
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.store import CampaignStore
from dispatcher.sending.telemetry import Telemetry
from dispatcher.sending.watchdog import Watchdog
from dispatcher.settings import Settings
from tests.helpers import (
    SANDBOX_TOKEN,
    Harness,
    SandboxHandle,
    json_of,
    one_sentence_error,
    plain_frame,
    recipients,
    recipients_csv,
    run,
    wait_until,
    worker_env,
)

KEYS = Keys("dsptest")


@pytest.fixture()
def store(redis_client: redis.Redis) -> CampaignStore:
    return CampaignStore(redis_client, KEYS)


def window(store: CampaignStore, campaign_id: str) -> int:
    return int(store.redis.hget(KEYS.campaign(campaign_id), "window"))


# -- the window arithmetic --------------------------------------------------------------------------

def test_a_campaign_alone_in_its_lane_keeps_its_whole_window() -> None:
    assert [fairshare.fair_window(30, w, w) for w in (1, 2, 4)] == [30, 30, 30]


def test_windows_split_the_lane_in_proportion_to_the_weights() -> None:
    assert (fairshare.fair_window(30, 4, 6), fairshare.fair_window(30, 2, 6)) == (20, 10)
    low, normal, high = (fairshare.fair_window(140, w, 7) for w in (1, 2, 4))
    assert (low, normal, high) == (20, 40, 80) and low + normal + high == 140


def test_many_campaigns_keep_the_lane_total_near_one_window_and_at_least_their_weight() -> None:
    windows = [fairshare.fair_window(150, 2, 2 * 50) for _ in range(50)]
    assert windows == [3] * 50  # 150 / 50 each: the lane still holds about one window
    assert fairshare.fair_window(16, 4, 4 + 2 * 100) == 4  # the ratio survives rounding
    assert fairshare.fair_window(16, 1, 1 + 2 * 100) == 1


def test_a_window_never_exceeds_the_campaigns_own() -> None:
    assert fairshare.fair_window(1, 4, 6) == 1
    assert fairshare.fair_window(3, 4, 4) == 3


def test_priorities_are_low_normal_high_and_anything_else_is_one_sentence() -> None:
    assert [fairshare.parse_priority(p) for p in (None, "", "low", "Normal", " HIGH ")] == \
        ["normal", "normal", "low", "normal", "high"]
    assert [fairshare.weight(p) for p in ("low", "normal", "high", None, "bogus")] == [1, 2, 4, 2, 2]
    with pytest.raises(InputError, match=r"^priority 'urgent' is not one of low, normal or high\.$"):
        fairshare.parse_priority("urgent")


# -- rebalancing in Redis ---------------------------------------------------------------------------

def test_a_new_campaign_takes_its_share_and_the_first_ones_window_shrinks(store: CampaignStore) -> None:
    first = store.create("big", plain_frame(5000), window=30)
    assert window(store, first) == 30
    second = store.create("urgent", plain_frame(500), window=30, priority="high")
    assert (window(store, first), window(store, second)) == (10, 20)
    assert store.get(second).priority == "high" and store.get(second).to_json()["priority"] == "high"
    third = store.create("slow", plain_frame(500), window=30, priority="low")
    assert [window(store, c) for c in (first, second, third)] == [9, 17, 4]


def test_the_reserve_follows_the_rebalanced_window(store: CampaignStore) -> None:
    ops = BatchOps(store.redis, KEYS)
    first = store.create("big", plain_frame(5000), window=30)
    assert len(ops.reserve(first)) == 30
    second = store.create("urgent", plain_frame(5000), window=30, priority="high")
    assert len(ops.reserve(second)) == 20
    assert len(ops.reserve(first)) == 0  # 30 queued, its window is 10 now: nothing until 20 settle


def test_a_paused_or_finished_campaign_gives_its_share_back(store: CampaignStore) -> None:
    first = store.create("a", plain_frame(5000), window=30)
    second = store.create("b", plain_frame(5000), window=30, priority="high")
    campaigns.pause(store, second)
    assert window(store, first) == 30
    store.transition(second, State.RUNNING)
    assert (window(store, first), window(store, second)) == (10, 20)
    store.transition(second, State.COMPLETED, "done")
    assert window(store, first) == 30
    assert store.redis.hkeys(KEYS.fair_lane("")) == [first.encode()]  # the finished one left the lane


def test_campaigns_of_different_organizations_do_not_share(store: CampaignStore) -> None:
    first = store.create("a", plain_frame(5000), window=30)
    store.redis.hset(KEYS.campaign(first), "organization", "acme")
    store.redis.hdel(KEYS.fair_lane(""), first)
    fairshare.join(store.redis, KEYS, first)
    second = store.create("b", plain_frame(5000), window=30)
    assert (window(store, first), window(store, second)) == (30, 30)


def test_a_queued_campaign_that_never_started_stops_counting(store: CampaignStore) -> None:
    first = store.create("a", plain_frame(5000), window=30)
    store.create("held", plain_frame(5000), window=30)
    store.redis.hset(KEYS.campaign(first), "state", State.RUNNING.value)
    assert window(store, first) == 15
    later = time.time() + fairshare.QUEUED_COUNTS_S + 1
    assert fairshare.rebalance(store.redis, KEYS, "", now=later) == {first: 30}


def test_a_running_campaign_whose_every_queued_batch_waits_for_its_window_stops_counting(
        store: CampaignStore) -> None:
    first = store.create("a", plain_frame(5000), window=30)
    night = store.create("night", plain_frame(5000), window=30)
    for cid in (first, night):
        store.redis.hset(KEYS.campaign(cid), mapping={"state": State.RUNNING.value, "enqueued": 30})
    assert fairshare.rebalance(store.redis, KEYS, "") == {first: 15, night: 15}
    store.redis.hset(KEYS.campaign(night), mapping={"parked": 30})  # all its batches wait for 09:00
    assert fairshare.rebalance(store.redis, KEYS, "") == {first: 30}


def test_the_watchdog_puts_a_campaign_stored_before_fair_share_in_its_lane(store: CampaignStore,
                                                                           settings: Settings) -> None:
    old = store.create("old", plain_frame(5000), window=30)
    store.redis.delete(KEYS.fair_lane(""))
    store.redis.hdel(KEYS.campaign(old), "priority", "window_base")
    new = store.create("new", plain_frame(5000), window=30, priority="high")
    assert window(store, new) == 30  # it does not know about the old one yet
    ops = BatchOps(store.redis, KEYS)
    Watchdog(store, ops, _NoQueue(), settings.with_overrides(key_prefix="dsptest")).sweep()
    assert (window(store, old), window(store, new)) == (10, 20)


class _NoQueue:
    def enqueue(self, campaign_id: str, numbers: Any) -> None:
        return None


def test_the_share_is_the_campaigns_part_of_its_lanes_recent_bulk_requests(store: CampaignStore) -> None:
    a = store.create("a", plain_frame(5000), window=30, priority="high")
    b = store.create("b", plain_frame(5000), window=30)
    c = store.create("c", plain_frame(5000), window=30)
    store.redis.hset(KEYS.campaign(c), "organization", "beta")
    fairshare.rebalance(store.redis, KEYS, "")  # c left the default lane...
    fairshare.join(store.redis, KEYS, c)  # ...for beta's
    now = time.time()
    pipe = store.redis.pipeline()
    fairshare.record_requests(pipe, KEYS, {a: 40, b: 10, c: 100}, now=now - 30)
    fairshare.record_requests(pipe, KEYS, {a: 40, b: 10}, now=now)
    fairshare.record_requests(pipe, KEYS, {a: 1000}, now=now - 120)  # older than a minute
    pipe.execute()
    share = fairshare.share(store.redis, KEYS, a, now=now)
    assert share["fraction"] == 0.8 and (share["requests"], share["lane_requests"]) == (80, 100)
    assert (share["priority"], share["weight"], share["lane_weight"], share["window"]) == ("high", 4, 6, 20)
    assert campaigns.status(store, b, Settings.from_env(environ={}, env_file=None))["share"]["fraction"] == 0.2
    page = campaigns.lane_shares(store, [store.get(x) for x in (a, b, c)])  # a page of the list: one read
    assert {x: (s["fraction"], s["lane_weight"]) for x, s in page.items()} == {a: (0.8, 6), b: (0.2, 6), c: (1.0, 2)}


def test_the_workers_telemetry_adds_each_campaigns_bulk_requests_to_the_share_counts(store: CampaignStore) -> None:
    telemetry = Telemetry(store.redis, KEYS)
    telemetry.requests_made("c1", 3)
    telemetry.requests_made("c2", 1)
    telemetry.requests_made("c1", 2)
    telemetry.requests_made("c3", 0)
    telemetry.flush()
    telemetry.flush()  # nothing new: nothing added
    assert fairshare.recent_requests(store.redis, KEYS) == {"c1": 5, "c2": 1}
    buckets = list(store.redis.scan_iter(match=KEYS.bulk_share(0).removesuffix("0") + "*"))
    assert buckets and all(0 < store.redis.ttl(b) <= fairshare.SHARE_TTL_S for b in buckets)  # they expire


def test_a_finished_campaign_shows_no_share(store: CampaignStore) -> None:
    a = store.create("a", plain_frame(100), window=30)
    store.transition(a, State.CANCELLED, "x")
    assert campaigns.lane_share(store, store.get(a)) is None


# -- real workers -----------------------------------------------------------------------------------

#: The account's limit in the worker tests: 20 bulk requests a second.
PER_MINUTE = 1200


@pytest.fixture()
def limited(settings: Settings, redis_client: redis.Redis,
            start_own_sandbox: Callable[..., SandboxHandle]) -> Iterator[Harness]:
    """A harness on a sandbox that refuses more than 1,200 requests a minute, workers paced at it."""
    own = start_own_sandbox("--rate-limit", str(PER_MINUTE))
    tuned = settings.with_overrides(instasent_base_url=own.url, rate_limit_per_min=PER_MINUTE, queue_window=0)
    h = Harness(tuned, redis_client, own)
    yield h
    h.stop()


def _start_workers(h: Harness) -> None:
    # The window the lane holds is the automatic one: 1.5 s of 20 requests a second.
    # As deployed: batches in flight from the limit and the latency (no fixed concurrency).
    h.workers.append(start_worker(worker_env(h.settings, DISPATCHER_QUEUE_WINDOW=h.settings.effective_queue_window),
                                  concurrency=None))


def _accepted(h: Harness) -> list[dict[str, Any]]:
    """Every message the sandbox accepted, in order of acceptance."""
    return list(h.sandbox.http.get("/_sandbox/messages").json()["messages"])


def split_while_both_run(accepted: list[dict[str, Any]], a: str, b: str, settle: int) -> tuple[int, int]:
    """Messages of ``a`` and ``b`` accepted while both were sending: after each had its first
    ``settle`` messages accepted (the first one's initial window drains), until either's last."""
    owner = [m["clientId"].split("-")[0] for m in accepted]
    start = max(owner.index(a) if settle == 0 else _nth(owner, a, settle), _nth(owner, b, settle))
    end = min(len(owner) - 1 - owner[::-1].index(a), len(owner) - 1 - owner[::-1].index(b))
    window_owners = owner[start:end]
    return window_owners.count(a), window_owners.count(b)


def _nth(owner: list[str], campaign_id: str, n: int) -> int:
    seen = 0
    for i, o in enumerate(owner):
        if o == campaign_id:
            seen += 1
            if seen >= n:
                return i
    raise AssertionError(f"campaign {campaign_id} has fewer than {n} accepted messages")


def _high_and_normal(h: Harness, size: int) -> None:
    _start_workers(h)
    normal = h.submit(recipients(size), name="normal")
    high = h.submit(recipients(size, start=size), name="high", priority="high")
    h.wait(high, lambda i: i.counts["sent"] >= size // 2, 300)
    shown = campaigns.status(h.store, high, h.settings)["share"]  # what `status` says meanwhile
    # Over the last minute, so with the start (when the normal one had the lane to itself): over half.
    assert shown["weight"] == 4 and shown["lane_weight"] == 6 and 0.5 < shown["fraction"] <= 0.8, shown
    for cid in (high, normal):
        assert h.wait(cid, lambda i: i.state in ("completed", "paused", "failed"), 300).state == "completed"
    # From when each had 20 % accepted: the normal one's first window, queued alone, has drained.
    got_high, got_normal = split_while_both_run(_accepted(h), high, normal, settle=size // 5)
    assert got_normal > 0 and 1.8 <= got_high / got_normal <= 2.2, (got_high, got_normal)
    assert h.sandbox.stats()["rate_limited"] == 0


@pytest.mark.slow
def test_a_high_and_a_normal_campaign_started_together_split_the_lane_two_to_one(limited: Harness) -> None:
    _high_and_normal(limited, 15_000)


def _small_behind_large(h: Harness, large_size: int, after_s: float) -> tuple[float, float]:
    """Submit ``large_size`` messages, then 1,000 ``after_s`` later; returns the seconds from the
    small one's submit to its first accepted message and to its completion."""
    _start_workers(h)
    large = h.submit(recipients(large_size), name="large")
    # "N s into the large one": once it has sent N s of the limit (100 messages a request).
    wait_until(lambda: h.store.get(large).counts["sent"] >= after_s * PER_MINUTE / 60 * 100, 120,
               "the large campaign to send")
    submitted = time.time()
    small = h.submit(recipients(1000, start=large_size), name="small")
    info = h.wait(small, lambda i: i.state in ("completed", "paused", "failed"), 120)
    done = time.time()
    assert info.state == "completed" and info.counts["sent"] == 1000
    first = min(m["acceptedAt"] for m in _accepted(h) if m["clientId"].startswith(small))
    campaigns.cancel(h.store, h.ops, large, 60)
    return first - submitted, done - submitted


@pytest.mark.slow
def test_a_small_campaign_submitted_behind_a_large_one_sends_at_once_and_finishes_soon(limited: Harness) -> None:
    first_bulk_s, complete_s = _small_behind_large(limited, 40_000, 2.0)
    assert first_bulk_s < 4.0 and complete_s < 15.0, (first_bulk_s, complete_s)


FULL = os.environ.get("DISPATCHER_FULL_FAIRNESS") == "1"


@pytest.mark.slow
@pytest.mark.skipif(not FULL, reason="minutes long: DISPATCHER_FULL_FAIRNESS=1 runs it")
def test_full_size_high_and_normal_split_two_to_one(limited: Harness) -> None:
    _high_and_normal(limited, 60_000)


@pytest.mark.slow
@pytest.mark.skipif(not FULL, reason="minutes long: DISPATCHER_FULL_FAIRNESS=1 runs it")
def test_full_size_1000_messages_10_s_into_200000_complete_within_15_s(limited: Harness) -> None:
    first_bulk_s, complete_s = _small_behind_large(limited, 200_000, 10.0)
    assert first_bulk_s < 2.0 and complete_s < 15.0, (first_bulk_s, complete_s)


# -- the command line -------------------------------------------------------------------------------

@pytest.fixture()
def cli_env(redis_url: str, sandbox: SandboxHandle, redis_client: redis.Redis) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "INSTASENT_TOKEN": SANDBOX_TOKEN, "INSTASENT_BASE_URL": sandbox.url,
            "DISPATCHER_KEY_PREFIX": "dsptest", "DISPATCHER_RATE_LIMIT": "600000",
            "DISPATCHER_ALLOW_VOLATILE_REDIS": "1"}


@pytest.mark.slow
def test_submit_and_schedule_add_take_a_priority_and_refuse_a_bad_one_in_one_sentence(
        cli_env: dict[str, str], tmp_path: Path, redis_client: redis.Redis) -> None:
    path = recipients_csv(tmp_path / "list.csv", 300)
    common = ("--text", "Hola", "--from", "ACME", "--country", "ES", "--no-hlr")
    bad = run(cli_env, "submit", str(path), *common, "--priority", "urgent")
    assert bad.returncode == 2
    assert one_sentence_error(bad) == "error: priority 'urgent' is not one of low, normal or high."
    status = json_of(run(cli_env, "submit", str(path), *common, "--priority", "high", "--json"))
    assert status["priority"] == "high" and status["share"]["weight"] == 4
    schedule = ("schedule", "add", "s", str(path), "--every", "1h", *common, "--priority")
    refused = run(cli_env, *schedule, "nope")
    assert refused.returncode == 2 and "priority 'nope' is not one of" in one_sentence_error(refused)
    assert run(cli_env, *schedule, "low").returncode == 0
    listed = orjson.loads(run(cli_env, "schedule", "list", "--json").stdout)
    assert [s["priority"] for s in listed] == ["low"]
