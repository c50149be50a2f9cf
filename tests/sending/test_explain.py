"""Every campaign says what it waits for, and when it should finish (issue 22), on a real Redis."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import orjson
import pandas as pd
import pytest
import redis

from dispatcher import money
from dispatcher.instasent.wire import SMS_BULK
from dispatcher.keys import Keys
from dispatcher.schema.names import State
from dispatcher.sending import campaigns, ledger
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.explain import estimated_finish, waiting_for
from dispatcher.sending.health import WorkerRegistry
from dispatcher.sending.store import CampaignStore
from dispatcher.sending.windows import parse_window
from dispatcher.settings import Settings
from tests.helpers import accented_frame as frame

KEYS = Keys("dsptest")


@pytest.fixture()
def store(redis_client: redis.Redis) -> CampaignStore:
    return CampaignStore(redis_client, KEYS)


@pytest.fixture()
def settings() -> Settings:
    return Settings.from_env(environ={}, env_file=None).with_overrides(key_prefix="dsptest")


def a_worker(store: CampaignStore) -> None:
    WorkerRegistry(store.redis, KEYS).beat("test-worker", ttl_s=60)


def test_a_queued_campaign_with_no_worker_waits_for_a_worker(store: CampaignStore, settings: Settings) -> None:
    cid = store.create("spring", frame(5), window=4)
    data = campaigns.status(store, cid, settings)
    assert data["waiting_for"]["kind"] == "no_worker" and data["waiting_for"]["workers"] == 0
    assert "worker" in data["waiting_for"]["sentence"] and data["estimated_finish"] is None


def test_a_paused_campaign_says_who_paused_it_and_when(store: CampaignStore, settings: Settings) -> None:
    a_worker(store)
    cid = store.create("spring", frame(5), window=4)
    before = time.time()
    campaigns.pause(store, cid, by="maria")
    waiting = campaigns.status(store, cid, settings)["waiting_for"]
    assert (waiting["kind"], waiting["by"]) == ("paused", "maria")
    assert before <= waiting["at"] <= time.time() and waiting["at_iso"].endswith("+00:00")
    assert waiting["sentence"].startswith("Paused by maria at ")


def test_a_campaign_paused_for_lack_of_balance_says_so(store: CampaignStore, settings: Settings) -> None:
    a_worker(store)
    cid = store.create("spring", frame(5), window=4)
    store.transition(cid, State.PAUSED, "insufficient_funds")
    waiting = campaigns.status(store, cid, settings)["waiting_for"]
    assert waiting["kind"] == "balance" and "balance" in waiting["sentence"] and waiting["by"] == "dispatcher"


def test_a_rate_limited_lane_says_until_when(store: CampaignStore, settings: Settings) -> None:
    a_worker(store)
    cid = store.create("spring", frame(5), window=4)
    until = time.time() + 40
    store.redis.set(KEYS.lane_pause(SMS_BULK), int(until * 1_000_000))
    waiting = campaigns.status(store, cid, settings)["waiting_for"]
    assert waiting["kind"] == "rate_limited" and waiting["at"] == pytest.approx(until, abs=0.01)
    assert "Rate-limited" in waiting["sentence"]


def test_a_campaign_waiting_for_its_window_names_the_opening_in_the_recipients_zone(
        store: CampaignStore, settings: Settings) -> None:
    a_worker(store)
    # The workers send 0.0001 messages/s: the 5 messages need 50,000 s, more than one 12-hour window.
    WorkerRegistry(store.redis, KEYS).publish_limits(60, 0.0001, ttl_s=60)
    window = parse_window("09:00-21:00")
    cid = store.create("spring", frame(5), window=4, send_window=window, zones=["Europe/Madrid"] * 5)
    opens = datetime(2030, 1, 7, 8, 0, tzinfo=UTC).timestamp()  # 09:00 in Madrid (CET)
    # The batch parked as a worker parks it: in the campaign's parked set, its messages waiting.
    store.redis.zadd(KEYS.parked_in(cid), {f"{cid}:0": opens})
    store.redis.hset(KEYS.campaign(cid), "waiting", 5)
    data = campaigns.status(store, cid, settings)
    waiting = data["waiting_for"]
    assert (waiting["kind"], waiting["zone"], waiting["at"]) == ("window", "Europe/Madrid", opens)
    assert waiting["at_iso"] == "2030-01-07T09:00:00+01:00"
    assert "09:00" in waiting["sentence"] and "Europe/Madrid" in waiting["sentence"]
    finish = data["estimated_finish"]
    assert finish is not None and finish["zone"] == "Europe/Madrid" and finish["basis"] == "share"
    # 43,200 s on the 7th (09:00-21:00), the other 6,800 s from 09:00 on the 8th.
    assert finish["at_iso"] == "2030-01-08T10:53:20+01:00"
    assert window.contains_local(datetime.fromtimestamp(finish["at"] - 1, ZoneInfo("Europe/Madrid")))


def test_a_few_messages_at_a_high_rate_before_the_window_opens_finish_soon_after_the_opening_at_once(
        store: CampaignStore, settings: Settings) -> None:
    a_worker(store)
    WorkerRegistry(store.redis, KEYS).publish_limits(600_000, 0.0, ttl_s=60)  # a million messages/s
    window = parse_window("09:00-21:00")
    cid = store.create("spring", frame(5), window=4, send_window=window, zones=["Europe/Madrid"] * 5)
    # No batch parked yet (no worker has looked at it): the estimate knows no zone and counts in UTC,
    # from now, three hours before the opening, with 5 microseconds of sending to place.
    opens = datetime(2030, 1, 7, 9, 0, tzinfo=UTC).timestamp()
    info = store.get(cid)
    started = time.process_time()
    finish = estimated_finish(store, info, settings, waiting_for(store, info), now=opens - 3 * 3600)
    assert time.process_time() - started < 2.0
    assert finish is not None and opens <= finish["at"] <= opens + 1


def test_a_moving_campaign_waits_for_nothing_and_finishes_at_its_share_of_the_lane(
        store: CampaignStore, settings: Settings) -> None:
    a_worker(store)
    WorkerRegistry(store.redis, KEYS).publish_limits(60, 0.0, ttl_s=60)  # 100 messages/s for the workers
    cid = store.create("spring", frame(500), window=4)
    now = time.time()
    info = store.get(cid)
    waiting = waiting_for(store, info)
    assert waiting["kind"] == "none" and waiting["sentence"] == ""
    finish = estimated_finish(store, info, settings, waiting, now=now)
    assert finish is not None and finish["basis"] == "share" and finish["pace_per_s"] == 100.0
    assert finish["at"] == pytest.approx(now + 5.0)


def test_the_list_shows_what_each_campaign_waits_for_without_the_costly_fields(
        store: CampaignStore) -> None:
    cid = store.create("spring", frame(5), window=4, cost=0.225, currency="EUR")
    item = campaigns.listed(store, store.get(cid))
    assert item["waiting_for"]["kind"] == "no_worker" and "estimated_finish" not in item
    assert item["cost"] == item["estimated_cost"] == "0.23" and item["actual_cost"] == "0.00"


def test_actual_cost_is_accepted_parts_times_price_in_decimal_and_zero_when_nothing_was_sent(
        store: CampaignStore, settings: Settings) -> None:
    a_worker(store)
    two = pd.concat([frame(2)]).assign(parts=2, price=2 * 1.08, unicode=True)
    cid = store.create("unicode", two, window=4, cost=2 * 2 * 1.08, currency="EUR")
    store.redis.hset(KEYS.ledger(cid, 0), mapping={"0": ledger.encode("sent", 1, "aa"),
                                                   "1": ledger.encode("sent", 1, "bb")})
    store.redis.hincrby(KEYS.campaign(cid), "n:sent", 2)
    data = campaigns.status(store, cid, settings)
    assert (data["actual_cost"], data["estimated_cost"], data["currency_exponent"]) == ("4.32", "4.32", 2)
    assert isinstance(data["cost"], str) and orjson.dumps(data).count(b"0000000") == 0
    cancelled = store.create("nothing", frame(2).assign(price=1.08), window=4, cost=2.16, currency="EUR")
    campaigns.cancel(store, BatchOps(store.redis, KEYS), cancelled, 60)
    data = campaigns.status(store, cancelled, settings)
    assert (data["state"], data["actual_cost"], data["estimated_cost"]) == ("cancelled", "0.00", "2.16")


def test_money_is_summed_in_decimal_and_shown_in_the_currencys_exponent() -> None:
    assert money.total(2 * 1.08, "EUR") == "2.16" and money.total(0, "EUR") == "0.00"
    assert money.total(216.4, "JPY") == "216" and money.total(1.2345, "KWD") == "1.235"
    assert money.unit(0.045, "EUR") == "0.045" and money.unit(0.04567, "EUR") == "0.0457"
    assert money.dec(0.1) + money.dec(0.2) == Decimal("0.3")
    assert money.as_strings({"cost": 2.1600000000000006, "by_country": {"ES": {"cost": 0.045}}, "rows": 3}, "EUR") == {
        "cost": "2.16", "by_country": {"ES": {"cost": "0.05"}}, "rows": 3}
