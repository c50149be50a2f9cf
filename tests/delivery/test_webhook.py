"""The delivery-report receiver as a real process, fed by the sandbox over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from dispatcher.dev.services import Service, start_webhook
from dispatcher.keys import Keys
from dispatcher.preflight.suppression import SuppressionList
from dispatcher.sending.store import CampaignInfo
from dispatcher.settings import Settings
from tests.helpers import (
    Harness,
    SandboxHandle,
    assert_exactly_once,
    finished,
    json_of,
    recipients,
    recipients_csv,
    run,
    wait_until,
    worker_env,
)

pytestmark = pytest.mark.slow
SECRET = "s3cret-webhook-path-0123456789"


@pytest.fixture()
def receiver(settings: Settings, redis_client: redis.Redis) -> Iterator[Service]:
    # Early reports are held until their send is recorded and matched on the next retry: retry often.
    env = {"REDIS_URL": settings.redis_url, "DISPATCHER_KEY_PREFIX": settings.key_prefix,
           "DISPATCHER_WEBHOOK_SECRET": SECRET, "DISPATCHER_ALLOW_VOLATILE_REDIS": "1", "DISPATCHER_HELD_RETRY": "1"}
    service = start_webhook(env)
    yield service
    service.stop()


@pytest.fixture()
def harness(settings: Settings, redis_client: redis.Redis, sandbox: SandboxHandle) -> Iterator[Harness]:
    h = Harness(settings, redis_client, sandbox)
    yield h
    h.stop()


def reported(info: CampaignInfo) -> int:
    return info.delivery["delivered"] + info.delivery["undelivered"]


def test_a_wrong_or_missing_secret_is_401_and_bad_json_is_400_and_nothing_changes(
        receiver: Service, redis_client: redis.Redis) -> None:
    body = {"id": "x", "clientId": "abcdef0123-0-0", "status": "delivered", "eventAt": "2026-11-23T10:00:00Z"}
    assert httpx.post(f"{receiver.url}/dlr/wrong", json=body).status_code == 401
    assert httpx.post(f"{receiver.url}/dlr/", json=body).status_code in (401, 404)
    assert httpx.post(f"{receiver.url}/dlr/{SECRET}", content=b"{not json").status_code == 400
    assert httpx.post(f"{receiver.url}/dlr/{SECRET}", json={"clientId": "x"}).status_code == 400
    assert redis_client.keys("dsptest:*") == []
    assert SECRET not in receiver.log_tail(200)


def test_the_receivers_error_bodies_have_the_consoles_shape(receiver: Service) -> None:
    # One error shape for both servers (issue 22): "error", with "message" kept for older clients.
    for answer in (httpx.post(f"{receiver.url}/dlr/wrong", json={}),
                   httpx.post(f"{receiver.url}/dlr/{SECRET}", content=b"{not json")):
        body = answer.json()
        assert set(body) == {"error", "message"} and body["error"] == body["message"] and body["error"]


def test_every_accepted_message_ends_with_a_delivery_status_despite_duplicates_and_early_reports(
        harness: Harness, receiver: Service) -> None:
    harness.sandbox.reset(dlr_url=f"{receiver.url}/dlr/{SECRET}", dlr_delay_s=0.05, dlr_failed_rate=0.1,
                          dlr_expired_rate=0.05, dlr_duplicate_rate=0.3, dlr_early_rate=0.3)
    harness.start_worker()
    cid = harness.submit(recipients(3000))
    info = harness.wait(cid, finished)
    info = harness.wait(cid, lambda i: reported(i) >= i.counts["sent"], timeout_s=60)
    assert info.counts["sent"] == 3000 and reported(info) == 3000
    assert info.delivery["undelivered"] > 0 and info.delivery_rate is not None and 0.7 < info.delivery_rate < 1
    assert_exactly_once(harness, cid, info)
    report_rows = [d for n in range(info.batches) for d in harness.store.deliveries(cid, n).values()]
    assert len(report_rows) == 3000 and {r[0] for r in report_rows} <= {"delivered", "failed", "expired"}
    assert harness.sandbox.stats()["dlr_sent"] > 3000  # the duplicates really went out


def test_a_stop_reply_suppresses_the_number_for_the_next_campaign(
        harness: Harness, receiver: Service, tmp_path: Path) -> None:
    harness.sandbox.reset(dlr_url=f"{receiver.url}/dlr/{SECRET}")
    harness.start_worker()
    env = worker_env(harness.settings)
    path = recipients_csv(tmp_path / "list.csv", 20)
    first = json_of(run(env, "submit", str(path), "--text", "Hola", "--from", "ACME", "--country", "ES",
                        "--no-hlr", "--wait", "--json"))
    assert first["counts"]["sent"] == 20
    harness.sandbox.http.post("/_sandbox/inbound", json={"from": "+34612345678", "to": "ACME", "message": "STOP",
                                                        "clientId": f"{first['id']}-0-0"}).raise_for_status()
    suppressed = SuppressionList(harness.store.redis, Keys(harness.settings.key_prefix))
    wait_until(lambda: "+34612345678" in suppressed, 10, "the opt-out")
    assert "+34612345678" in suppressed
    second = json_of(run(env, "submit", str(path), "--text", "Hola", "--from", "ACME", "--country", "ES",
                         "--no-hlr", "--wait", "--json"))
    assert second["counts"]["sent"] == 19 and second["counts"]["suppressed"] == 1
    listed = run(env, "inbound", first["id"], "--json")
    assert listed.returncode == 0 and '"message":"STOP"' in listed.stdout


def test_errors_after_accept_leave_no_unknown_after_reconciliation_and_nothing_accepted_twice(
        harness: Harness, receiver: Service) -> None:
    harness.sandbox.reset(dlr_url=f"{receiver.url}/dlr/{SECRET}", enforce_unique_client_id=False)
    harness.sandbox.faults(error_after_accept_rate=0.4)
    harness.start_worker(DISPATCHER_RECONCILE_DELAY="1")
    cid = harness.submit(recipients(3000))
    info = harness.wait(cid, finished)
    result = run(worker_env(harness.settings), "reconcile", cid, "--grace", "0", "--wait", "--json")
    assert result.returncode == 0, result.stderr
    info = harness.wait(cid, lambda i: i.counts["unknown"] == 0 and i.counts["pending"] == 0)
    assert info.counts["sent"] == 3000
    assert_exactly_once(harness, cid, info)
    assert harness.sandbox.stats()["errors_after_accept"] > 0


@pytest.mark.parametrize("global_optout", ["0", "1"])
def test_a_stop_reply_to_an_accounts_campaign_suppresses_the_number_for_that_account_or_everywhere(
        settings: Settings, redis_client: redis.Redis, sandbox: SandboxHandle, global_optout: str) -> None:
    env = {"REDIS_URL": settings.redis_url, "DISPATCHER_KEY_PREFIX": settings.key_prefix,
           "DISPATCHER_WEBHOOK_SECRET": SECRET, "DISPATCHER_ALLOW_VOLATILE_REDIS": "1",
           "DISPATCHER_GLOBAL_OPTOUT": global_optout}
    service = start_webhook(env)
    try:
        keys = Keys(settings.key_prefix)
        cid = Harness(settings, redis_client, sandbox).store.create("of-a1", recipients(3), window=1, account="a1",
                                                                    organization="acme")
        sandbox.reset(dlr_url=f"{service.url}/dlr/{SECRET}")
        sandbox.http.post("/_sandbox/inbound", json={"from": "+34612345678", "to": "ACME", "message": "BAJA",
                                                     "clientId": f"{cid}-0-0"}).raise_for_status()
        a1, b = SuppressionList(redis_client, keys, account="a1"), SuppressionList(redis_client, keys, account="b")
        wait_until(lambda: a1.flags(["+34612345678"]).tolist() == [True], 10, "the opt-out")
        everywhere = global_optout == "1"
        assert ("+34612345678" in SuppressionList(redis_client, keys)) is everywhere
        assert b.flags(["+34612345678"]).tolist() == [everywhere]
    finally:
        service.stop()
