"""Reports held for an unknown campaign or an unsent message: bounded in age and number, counted
when they expire unmatched, and retried with nobody typing."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
import redis

from dispatcher.delivery.held import HOLD_TTL_S, HeldReports
from dispatcher.delivery.reports import DeliveryBook, Report, apply_call
from dispatcher.dev.services import Service, start_webhook
from dispatcher.keys import Keys
from dispatcher.schema.names import REFUSED_REPORTS
from dispatcher.sending.store import CampaignStore
from dispatcher.sending.telemetry import read as read_telemetry
from dispatcher.settings import Settings
from tests.helpers import record_sent, stored_campaign

KEYS = Keys("dsptest")
SECRET = "s3cret-webhook-held-0123456789"


def report(cid: str, index: int) -> Report:
    return Report(instasent_id=f"i{index}", client_id=f"{cid}-0-{index}", status="delivered", code=0,
                  event_at="2026-11-23T10:00:00Z")


def field(r: Report) -> str:
    return f"{r.client_id}|{r.status}|{r.event_at}|{r.instasent_id}"


def expired(client: redis.Redis) -> float:
    return read_telemetry(client, KEYS).get(REFUSED_REPORTS["expired"], 0.0)


@pytest.fixture()
def book(redis_client: redis.Redis) -> DeliveryBook:
    return DeliveryBook(redis_client, KEYS)


def test_the_hold_keeps_at_most_its_cap_and_drops_the_oldest(book: DeliveryBook) -> None:
    book.held = HeldReports(book.redis, KEYS, cap=3)
    for i in range(5):
        assert book.apply(report("feedbeef00", i)) == "held"
    assert book.redis.hlen(KEYS.dlr_held()) == 3
    assert sorted(book.redis.hkeys(KEYS.dlr_held())) == sorted(field(report("feedbeef00", i)).encode()
                                                              for i in (2, 3, 4))
    assert expired(book.redis) == 2


def test_a_held_report_expires_on_its_own_and_holding_it_again_does_not_keep_it(book: DeliveryBook) -> None:
    old = report("feedbeef00", 0)
    book.apply(old)
    nearly = time.time() - HOLD_TTL_S + 30
    book.redis.zadd(KEYS.dlr_held_at(), {field(old): nearly})  # as if it had been held almost 48 h ago
    book.apply(old)  # Instasent retried it: that does not make it young again
    assert book.redis.zscore(KEYS.dlr_held_at(), field(old)) == nearly
    assert book.redis.ttl(KEYS.dlr_held()) == -1  # no key-wide TTL that every hold refreshes
    later = report("feedbeef00", 1)
    book.held.hold(field(later), b"{}", now=time.time() + 60)  # a minute later, another report is held
    assert not book.redis.hexists(KEYS.dlr_held(), field(old))
    assert book.redis.hkeys(KEYS.dlr_held()) == [field(later).encode()]
    assert expired(book.redis) == 1


def test_reports_held_by_an_earlier_version_are_adopted_and_then_expire(book: DeliveryBook) -> None:
    legacy = report("feedbeef00", 7)
    book.redis.hset(KEYS.dlr_held(), field(legacy), orjson.dumps({**{n: getattr(legacy, n) for n in
                                                                     Report.__slots__}}))
    book.redis.expire(KEYS.dlr_held(), 3600)
    assert book.retry_held() == 0
    assert book.redis.zscore(KEYS.dlr_held_at(), field(legacy)) is not None
    book.held.retry(lambda _: None, now=time.time() + HOLD_TTL_S + 60)
    assert book.redis.hlen(KEYS.dlr_held()) == 0


def test_retrying_applies_a_held_report_once_its_campaign_exists(book: DeliveryBook) -> None:
    cid = stored_campaign(book.redis, KEYS)
    record_sent(book.redis, KEYS, cid, [1])
    hidden = f"{KEYS.campaign(cid)}:hidden"
    book.redis.rename(KEYS.campaign(cid), hidden)  # the campaign is not here yet
    assert book.apply(report(cid, 1)) == "held" and book.retry_held() == 0
    book.redis.rename(hidden, KEYS.campaign(cid))
    assert book.retry_held() == 1 and book.retry_held() == 0
    assert CampaignStore(book.redis, KEYS).get(cid).delivery["delivered"] == 1
    assert book.redis.hlen(KEYS.dlr_held()) == 0 and book.redis.zcard(KEYS.dlr_held_at()) == 0


def test_a_report_for_a_message_never_sent_stays_held_with_its_first_time_and_expires_counted(
        book: DeliveryBook) -> None:
    cid = stored_campaign(book.redis, KEYS)
    early = report(cid, 3)
    assert book.apply(early) == "held"
    first = book.redis.zscore(KEYS.dlr_held_at(), field(early))
    for _ in range(3):  # tried again and again: still unsent, still held, still as old
        assert book.retry_held() == 0
        assert book.apply(early) == "held"
    assert book.redis.zscore(KEYS.dlr_held_at(), field(early)) == first
    book.held.retry(lambda _: None, now=time.time() + HOLD_TTL_S + 60)
    assert book.redis.hlen(KEYS.dlr_held()) == 0 and book.redis.zcard(KEYS.dlr_held_at()) == 0
    assert expired(book.redis) == 1
    info = CampaignStore(book.redis, KEYS).get(cid)
    assert (info.counts["sent"], info.delivery["delivered"]) == (0, 0)


def test_a_held_report_is_applied_by_one_of_two_retries_at_once(book: DeliveryBook) -> None:
    cid = stored_campaign(book.redis, KEYS)
    assert book.apply(report(cid, 0)) == "held"
    record_sent(book.redis, KEYS, cid, [0])
    other = DeliveryBook(book.redis, KEYS)
    plan = lambda blob: apply_call(KEYS, Report(**orjson.loads(blob)))  # noqa: E731
    calls = [(f, plan(b)) for f, b in book.redis.hgetall(KEYS.dlr_held()).items()]
    # Both retries saw the same page; the script decides which one has it.
    assert book.held._try(calls) == ["applied"] and other.held._try(calls) == ["gone"]
    assert CampaignStore(book.redis, KEYS).get(cid).delivery["delivered"] == 1


@pytest.fixture()
def receiver(settings: Settings, redis_client: redis.Redis) -> Iterator[Service]:
    service = start_webhook({"REDIS_URL": settings.redis_url, "DISPATCHER_KEY_PREFIX": settings.key_prefix,
                             "DISPATCHER_WEBHOOK_SECRET": SECRET, "DISPATCHER_HELD_RETRY": "0.2",
                             "DISPATCHER_ALLOW_VOLATILE_REDIS": "1"})
    yield service
    service.stop()


@pytest.mark.slow
def test_the_receiver_applies_held_reports_by_itself_once_the_campaign_exists(
        receiver: Service, redis_client: redis.Redis) -> None:
    cid = stored_campaign(redis_client, KEYS)
    record_sent(redis_client, KEYS, cid, [2])
    hidden = f"{KEYS.campaign(cid)}:hidden"
    redis_client.rename(KEYS.campaign(cid), hidden)
    body = {"id": "i2", "clientId": f"{cid}-0-2", "status": "delivered", "eventAt": "2026-11-23T10:00:00Z"}
    answer = httpx.post(f"{receiver.url}/dlr/{SECRET}", json=body)
    assert answer.status_code == 200 and answer.json()["outcomes"] == ["held"]
    redis_client.rename(hidden, KEYS.campaign(cid))
    store = CampaignStore(redis_client, KEYS)
    deadline = time.monotonic() + 20
    while store.get(cid).delivery["delivered"] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert store.get(cid).delivery["delivered"] == 1
    assert redis_client.hlen(KEYS.dlr_held()) == 0
