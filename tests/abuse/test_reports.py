"""Forged delivery reports against a real receiver process and real Redis (issue 21, W2): a report
is applied only to a message recorded as sent under the same Instasent id, a report never makes a
message sent, an undocumented status is refused, and an allow list keeps other addresses out.
Nothing a forged report does shows in ``status``, the per-message report or ``/metrics``, except
the counters of refused reports, which are there to show it.

Each test here fails on 92455ba, where a report was trusted on its secret alone."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dispatcher.console.metrics import registry_for
from dispatcher.delivery.held import HOLD_TTL_S
from dispatcher.delivery.reports import DeliveryBook
from dispatcher.dev.services import Service, start_webhook
from dispatcher.keys import Keys
from dispatcher.sending.campaigns import status
from dispatcher.sending.report import build_report
from dispatcher.sending.store import CampaignStore
from dispatcher.settings import Settings
from tests.helpers import build_console, record_sent, stored_campaign

pytestmark = pytest.mark.slow
KEYS = Keys("dsptest")
SECRET = "s3cret-webhook-abuse-0123456789"
#: Instasent-like ids (24 hex digits): the one really sent, and a forger's.
REAL, FORGED = "5f1e2d3c4b5a69788796a5b4", "0123456789abcdef01234567"


def start(settings: Settings, **extra: str) -> Service:
    return start_webhook({"REDIS_URL": settings.redis_url, "DISPATCHER_KEY_PREFIX": settings.key_prefix,
                          "DISPATCHER_WEBHOOK_SECRET": SECRET, "DISPATCHER_HELD_RETRY": "0.2",
                          "DISPATCHER_ALLOW_VOLATILE_REDIS": "1", **extra})


@pytest.fixture()
def receiver(settings: Settings, redis_client: redis.Redis) -> Iterator[Service]:
    service = start(settings)
    yield service
    service.stop()


def dlr(client_id: str, status_: str, instasent_id: str, at: str = "2026-11-23T10:00:00Z") -> dict[str, object]:
    return {"id": instasent_id, "clientId": client_id, "status": status_, "code": 0, "eventAt": at}


def post(service: Service, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{service.url}/dlr/{SECRET}", json=body, headers=headers, timeout=10)


class Seen:
    """What a user sees of a campaign: ``status``, the per-message report and ``/metrics``."""

    def __init__(self, settings: Settings, client: redis.Redis, cid: str) -> None:
        self.store = CampaignStore(client, KEYS)
        self.registry = registry_for(build_console(settings, client))
        self.cid = cid

    def now(self) -> dict[str, Any]:
        shown = status(self.store, self.cid)
        for moving in ("updated_at", "last_sweep", "workers", "waiting_for_worker"):
            shown.pop(moving, None)
        metrics = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(generate_latest(self.registry).decode())
                   for s in family.samples}
        return {"status": shown, "report": build_report(self.store, self.cid).to_dict("records"),
                "metrics": {k: v for k, v in metrics.items() if not k[0].startswith("dispatcher_delivery_reports")},
                }

    def refused(self) -> dict[str, float]:
        text = generate_latest(self.registry).decode()
        return {s.labels["reason"]: s.value for family in text_string_to_metric_families(text)
                if family.name == "dispatcher_delivery_reports_refused" for s in family.samples}


def eventually(check: Callable[[], bool], timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_a_forged_failed_report_with_another_id_does_not_undo_a_delivery(
        receiver: Service, settings: Settings, redis_client: redis.Redis) -> None:
    cid = stored_campaign(redis_client, KEYS, n=2)
    record_sent(redis_client, KEYS, cid, [0], id_of=lambda _: REAL)
    assert post(receiver, dlr(f"{cid}-0-0", "delivered", REAL)).json()["outcomes"] == ["applied"]
    seen = Seen(settings, redis_client, cid)
    before = seen.now()
    assert before["report"][0]["delivery"] == "delivered"
    forged = post(receiver, dlr(f"{cid}-0-0", "failed", FORGED, at="2026-11-23T10:05:00Z"))
    assert forged.status_code == 200 and forged.json()["outcomes"] == ["mismatch"]
    assert seen.now() == before
    assert seen.refused()["mismatch"] == 1


def test_a_forged_delivered_report_for_an_unsent_message_never_makes_it_sent_and_expires(
        receiver: Service, settings: Settings, redis_client: redis.Redis) -> None:
    cid = stored_campaign(redis_client, KEYS, n=2)  # nothing sent yet: both messages wait (for their window, say)
    seen = Seen(settings, redis_client, cid)
    before = seen.now()
    answer = post(receiver, dlr(f"{cid}-0-1", "delivered", FORGED))
    assert answer.status_code == 200 and answer.json()["outcomes"] == ["held"]
    time.sleep(1.0)  # several of the receiver's retries go by: still unsent, still held
    assert seen.now() == before
    assert before["status"]["counts"]["sent"] == 0 and before["report"][1]["status"] == "pending"
    # No send ever matches it: it expires, counted, and still nothing shows.
    DeliveryBook(redis_client, KEYS).held.retry(lambda _: None, now=time.time() + HOLD_TTL_S + 60)
    assert redis_client.hlen(KEYS.dlr_held()) == 0
    assert seen.now() == before
    assert seen.refused()["expired"] == 1


def test_a_held_report_is_applied_once_its_message_is_really_sent_under_the_same_id(
        receiver: Service, settings: Settings, redis_client: redis.Redis) -> None:
    cid = stored_campaign(redis_client, KEYS, n=2)
    seen = Seen(settings, redis_client, cid)
    before = seen.now()
    assert post(receiver, dlr(f"{cid}-0-0", "delivered", REAL)).json()["outcomes"] == ["held"]
    time.sleep(0.5)
    assert seen.now() == before  # an early report alone shows nothing
    record_sent(redis_client, KEYS, cid, [0], id_of=lambda _: REAL)  # the worker records the send
    store = CampaignStore(redis_client, KEYS)
    assert eventually(lambda: store.get(cid).delivery["delivered"] == 1)
    assert build_report(store, cid).to_dict("records")[0]["delivery"] == "delivered"
    assert redis_client.hlen(KEYS.dlr_held()) == 0


def test_a_held_report_is_refused_when_its_message_is_sent_under_another_id(
        receiver: Service, settings: Settings, redis_client: redis.Redis) -> None:
    cid = stored_campaign(redis_client, KEYS, n=2)
    assert post(receiver, dlr(f"{cid}-0-0", "failed", FORGED)).json()["outcomes"] == ["held"]
    record_sent(redis_client, KEYS, cid, [0], id_of=lambda _: REAL)
    seen = Seen(settings, redis_client, cid)
    before = seen.now()
    assert eventually(lambda: redis_client.hlen(KEYS.dlr_held()) == 0)
    assert seen.now() == before
    assert before["status"]["counts"]["sent"] == 1 and before["report"][0]["delivery"] == ""
    assert before["report"][0]["instasent_id"] == REAL
    assert seen.refused()["mismatch"] == 1


@pytest.mark.parametrize("word", ["DELIVRD", "UNDELIV", "delivrd", "ok"])
def test_a_status_instasent_does_not_document_is_400_and_counted(
        word: str, receiver: Service, settings: Settings, redis_client: redis.Redis) -> None:
    cid = stored_campaign(redis_client, KEYS, n=4)
    record_sent(redis_client, KEYS, cid, [0, 1, 2, 3], id_of=lambda k: f"{REAL[:-1]}{k}")
    for k in (0, 1, 2):
        assert post(receiver, dlr(f"{cid}-0-{k}", "delivered", f"{REAL[:-1]}{k}")).status_code == 200
    seen = Seen(settings, redis_client, cid)
    before = seen.now()
    assert before["status"]["delivery_rate"] == 1.0
    answer = post(receiver, dlr(f"{cid}-0-3", word, f"{REAL[:-1]}3"))
    assert answer.status_code == 400
    assert answer.json()["message"].startswith(f"{word!r} is not a delivery status Instasent documents")
    assert seen.now() == before  # the delivery rate still reads 100 %, not 75 %
    assert seen.refused()["status"] == 1


def test_the_allow_list_keeps_other_addresses_out_before_the_secret_is_checked(
        settings: Settings, redis_client: redis.Redis) -> None:
    cid = stored_campaign(redis_client, KEYS, n=2)
    record_sent(redis_client, KEYS, cid, [0, 1], id_of=lambda k: f"{REAL[:-1]}{k}")
    seen = Seen(settings, redis_client, cid)
    before = seen.now()
    body = dlr(f"{cid}-0-0", "delivered", f"{REAL[:-1]}0")
    outside = start(settings, DISPATCHER_WEBHOOK_ALLOW="203.0.113.0/24, 2001:db8::/32",
                    DISPATCHER_FORWARDED_ALLOW_IPS="127.0.0.1")
    try:
        answer = post(outside, body)  # from 127.0.0.1
        assert answer.status_code == 403 and answer.headers.get("connection") == "close"
        assert httpx.post(f"{outside.url}/dlr/wrong", json=body).status_code == 403  # no secret oracle either
        # A client behind the (trusted, loopback) proxy may not name its own address in front of it.
        spoofed = post(outside, body, headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.7"})
        assert spoofed.status_code == 403
        assert seen.now() == before
        assert seen.refused()["source"] == 3
        # The proxy on loopback says the client is 203.0.113.9: inside the list.
        inside = post(outside, body, headers={"X-Forwarded-For": "203.0.113.9"})
        assert inside.status_code == 200 and inside.json()["outcomes"] == ["applied"]
    finally:
        outside.stop()
    # X-Forwarded-For counts only from a trusted proxy: with loopback not trusted, it is ignored.
    untrusting = start(settings, DISPATCHER_WEBHOOK_ALLOW="203.0.113.0/24", DISPATCHER_FORWARDED_ALLOW_IPS="192.0.2.1")
    try:
        ignored = post(untrusting, dlr(f"{cid}-0-1", "delivered", f"{REAL[:-1]}1"),
                       headers={"X-Forwarded-For": "203.0.113.9"})
        assert ignored.status_code == 403
    finally:
        untrusting.stop()
    assert CampaignStore(redis_client, KEYS).get(cid).delivery["delivered"] == 1
