"""A delivery report is answered 2xx only once it is stored, and with ``DISPATCHER_REDIS_MIN_REPLICAS``
only once that many replicas have it; otherwise 503, so that Instasent retries (issue 23). The
session's Redis has no replica, so asking for one shows the refusal (real Redis, the app in process)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio as aioredis
from starlette.testclient import TestClient

from dispatcher.delivery.batched import BatchedScript
from dispatcher.delivery.replicated import NotReplicated, barrier
from dispatcher.keys import Keys
from dispatcher.resources import readiness_probe
from dispatcher.sending.store import CampaignStore
from dispatcher.settings import Settings
from dispatcher.webhook.app import create_app
from tests.helpers import record_sent, stored_campaign

KEYS = Keys("dsptest")
SECRET = "s3cret-replicated-0123456789"
INCR = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


def report(cid: str, index: int) -> dict[str, object]:
    return {"id": f"i{index}", "clientId": f"{cid}-0-{index}", "status": "delivered", "code": 0,
            "eventAt": "2026-11-23T10:00:00Z"}


@pytest.fixture()
def receiver(settings: Settings, redis_client: redis.Redis, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    replicas, reachable = request.param
    url = settings.redis_url if reachable else "redis://127.0.0.1:1/0"
    app = create_app(redis_client, aioredis.Redis.from_url(url, socket_connect_timeout=1), KEYS, SECRET,
                     held_retry_s=0, probe=readiness_probe(settings), replicas=replicas, replica_wait_s=0.05)
    with TestClient(app) as http:
        yield http


def test_a_batched_call_waits_for_the_replicas_and_fails_when_too_few_acknowledge(
        redis_url: str, redis_client: redis.Redis) -> None:
    async def main() -> list[object]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            plain = await BatchedScript(client, INCR)(["dsptest:rep"], [1])
            waiting = BatchedScript(client, INCR, replicas=1, wait_s=0.05)
            refused = await asyncio.gather(waiting(["dsptest:rep"], [1]), waiting(["dsptest:rep"], [1]),
                                           return_exceptions=True)
            return [plain, *refused]
        finally:
            await client.aclose()

    plain, *refused = asyncio.run(main())
    assert plain == 1
    assert all(isinstance(r, NotReplicated) and r.acks == 0 and r.needed == 1 for r in refused)
    assert int(redis_client.get("dsptest:rep") or 0) == 3  # applied, but not answered as stored


def test_a_barrier_waits_for_nothing_without_replicas_asked_and_refuses_when_too_few_acknowledge(
        redis_client: redis.Redis) -> None:
    barrier(redis_client, KEYS, 0, 0.05)
    with pytest.raises(NotReplicated, match="only 0 of the 2 Redis replicas"):
        barrier(redis_client, KEYS, 2, 0.05)


@pytest.mark.parametrize("receiver", [(0, True)], indirect=True, ids=["no-replicas-asked"])
def test_a_report_is_answered_200_when_no_replica_is_asked_for(
        receiver: TestClient, redis_client: redis.Redis) -> None:
    cid = stored_campaign(redis_client, KEYS, n=2)
    record_sent(redis_client, KEYS, cid, [0, 1])
    answer = receiver.post(f"/dlr/{SECRET}", json=report(cid, 0))
    assert answer.status_code == 200 and answer.json()["outcomes"] == ["applied"]


@pytest.mark.parametrize("receiver", [(1, True), (0, False)], indirect=True,
                         ids=["too-few-replicas", "redis-unreachable"])
def test_a_report_not_stored_on_enough_replicas_or_not_at_all_is_answered_503_and_applies_once_when_retried(
        receiver: TestClient, redis_client: redis.Redis) -> None:
    cid = stored_campaign(redis_client, KEYS, n=2)
    record_sent(redis_client, KEYS, cid, [0, 1])
    answer = receiver.post(f"/dlr/{SECRET}", json=report(cid, 1))
    assert answer.status_code == 503 and "retry" in answer.json()["error"]
    info = CampaignStore(redis_client, KEYS).get(cid)
    assert info.delivery["delivered"] in (0, 1)  # applied or not: a retry applies it at most once
