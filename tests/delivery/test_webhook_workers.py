"""``dispatcher webhook --workers 2``: two real receiver processes share the port and apply each report once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from dispatcher.dev.services import Service, start_webhook
from dispatcher.keys import Keys
from dispatcher.sending.store import CampaignStore
from dispatcher.settings import Settings
from tests.helpers import record_sent, stored_campaign

pytestmark = pytest.mark.slow
KEYS = Keys("dsptest")
SECRET = "s3cret-webhook-workers-0123456789"


@pytest.fixture()
def receiver(settings: Settings, redis_client: redis.Redis) -> Iterator[Service]:
    service = start_webhook({"REDIS_URL": settings.redis_url, "DISPATCHER_KEY_PREFIX": settings.key_prefix,
                             "DISPATCHER_WEBHOOK_SECRET": SECRET, "DISPATCHER_HELD_RETRY": "0.2",
                             "DISPATCHER_ALLOW_VOLATILE_REDIS": "1"}, workers=2)
    yield service
    service.stop()


def worker_processes(parent: int) -> list[int]:
    """The receiver processes uvicorn started under ``parent`` (not its helper processes)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def body(cid: str, index: int) -> dict[str, object]:
    return {"id": f"i{index}", "clientId": f"{cid}-0-{index}", "status": "delivered", "code": 0,
            "eventAt": "2026-11-23T10:00:00Z"}


def post(url: str, report: dict[str, object]) -> str:
    with httpx.Client(timeout=10) as client:  # a new connection each time, so either process may take it
        answer = client.post(url, json=report)
    answer.raise_for_status()
    return str(answer.json()["outcomes"][0])


def test_two_receiver_processes_answer_reports_and_each_report_is_applied_once(
        receiver: Service, redis_client: redis.Redis) -> None:
    assert len(worker_processes(receiver.pid)) == 2
    cid = stored_campaign(redis_client, KEYS, n=4)
    record_sent(redis_client, KEYS, cid, [0, 1, 2, 3])
    url = f"{receiver.url}/dlr/{SECRET}"
    reports = [body(cid, i) for i in range(4)] * 10  # each report ten times, from many connections at once
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda r: post(url, r), reports))
    assert sorted(set(outcomes)) == ["applied", "duplicate"]
    assert outcomes.count("applied") == 4
    info = CampaignStore(redis_client, KEYS).get(cid)
    assert info.delivery["delivered"] == 4


def test_a_held_report_is_applied_once_by_one_of_two_receiver_processes(
        receiver: Service, redis_client: redis.Redis) -> None:
    cid = stored_campaign(redis_client, KEYS, n=4)
    record_sent(redis_client, KEYS, cid, [1, 2])
    hidden = f"{KEYS.campaign(cid)}:hidden"
    redis_client.rename(KEYS.campaign(cid), hidden)
    url = f"{receiver.url}/dlr/{SECRET}"
    assert [post(url, body(cid, i)) for i in (1, 2)] == ["held", "held"]
    redis_client.rename(hidden, KEYS.campaign(cid))
    store = CampaignStore(redis_client, KEYS)
    deadline = time.monotonic() + 20
    while store.get(cid).delivery["delivered"] < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert store.get(cid).delivery["delivered"] == 2
    assert redis_client.hlen(KEYS.dlr_held()) == 0
    assert all(post(url, body(cid, i)) == "duplicate" for i in (1, 2))
