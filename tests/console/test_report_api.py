"""The campaign report, the preflight's additions, rejects downloads, schedules' controls and one error
shape in the API (issue 22): real Redis, a real worker and webhook receiver, the sandbox's reports."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
import redis

from dispatcher.dev.services import Service, start_webhook
from dispatcher.settings import Settings
from tests.helpers import UPLOAD_OPTIONS as OPTIONS
from tests.helpers import ConsoleHandle, Harness, SandboxHandle, small_csv
from tests.helpers import upload_campaign as submit

SECRET = "s3cret-report-api-0123456789abcdef"


@pytest.fixture()
def receiver(settings: Settings, redis_client: redis.Redis) -> Iterator[Service]:
    service = start_webhook({"REDIS_URL": settings.redis_url, "DISPATCHER_KEY_PREFIX": settings.key_prefix,
                             "DISPATCHER_WEBHOOK_SECRET": SECRET, "DISPATCHER_HELD_RETRY": "0.2",
                             "DISPATCHER_ALLOW_VOLATILE_REDIS": "1"})
    yield service
    service.stop()


@pytest.fixture()
def harness(settings: Settings, redis_client: redis.Redis, sandbox: SandboxHandle) -> Iterator[Harness]:
    h = Harness(settings, redis_client, sandbox)
    h.start_worker()
    yield h
    h.stop()


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))


@pytest.mark.slow
def test_a_sent_campaign_with_failed_deliveries_has_a_full_report(
        api: ConsoleHandle, harness: Harness, receiver: Service, sandbox: SandboxHandle) -> None:
    sandbox.reset(dlr_url=f"{receiver.url}/dlr/{SECRET}", dlr_delay_s=0.05, dlr_failed_rate=0.3, seed=7)
    created = submit(api, small_csv(120, bad=2), name="spring")
    cid = created["id"]
    info = harness.wait(cid, lambda i: i.state == "completed"
                        and i.delivery["delivered"] + i.delivery["undelivered"] == i.counts["sent"])
    response = api.http.get(f"/api/campaigns/{cid}/summary", headers=api.as_viewer())
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["text"], report["sender"], report["currency"]) == ("Hola {name}", "ACME", "EUR")
    totals = report["totals"]
    assert totals["sent"] == 120 and totals["reported"] == 120 and totals["undelivered"] == info.delivery["undelivered"]
    assert 0 < totals["undelivered"] < 120
    rate = report["delivery_rate"]
    assert rate["of_reported"] == pytest.approx(totals["delivered"] / 120, abs=1e-4)
    assert rate["of_sent"] == pytest.approx(totals["delivered"] / 120, abs=1e-4)
    (failed,) = report["undelivered"]
    assert (failed["status"], failed["code"], failed["count"]) == ("failed", "1", totals["undelivered"])
    assert "could not deliver" in failed["reason"]
    # 120 one-part messages at the sandbox's ES price, summed in Decimal: a string, exact.
    price = Decimal("0.045")  # the sandbox's ES price per part (dispatcher.dev.sandbox.prices)
    assert report["cost"]["actual"] == str((120 * price).quantize(Decimal("0.01")))
    (spain,) = report["countries"]
    assert (spain["country"], spain["messages"], spain["sent"], spain["parts"]) == ("ES", 120, 120, 120)
    assert spain["unit_price"] == "0.045" and spain["delivered"] == totals["delivered"]
    kinds = [e["kind"] for e in report["timeline"]["events"]]
    assert kinds[0] == "created" and "completed" in kinds
    status = api.http.get(f"/api/campaigns/{cid}", headers=api.as_viewer()).json()
    assert status["actual_cost"] == report["cost"]["actual"] and status["waiting_for"]["kind"] == "none"
    assert all(isinstance(status[k], str) for k in ("cost", "estimated_cost", "actual_cost"))
    messages = rows_of(api.http.get(f"/api/campaigns/{cid}/report?format=csv", headers=api.as_viewer()).text)
    undelivered = [m for m in messages if m["delivery"] == "failed"]
    assert len(undelivered) == totals["undelivered"]
    assert all(m["report_code"] == "1" and m["delivered_at"] == "" and m["report_at"] for m in undelivered)
    assert all(m["error"].startswith("undelivered:") for m in undelivered)
    rejects = api.http.get(f"/api/campaigns/{cid}/rejects?format=csv", headers=api.as_viewer())
    assert rejects.status_code == 200 and "attachment" in rejects.headers["content-disposition"]
    assert [r["value"] for r in rows_of(rejects.text)] == ["12345", "12345"]
    assert api.http.get(f"/api/campaigns/{cid}/rejects?format=xlsx", headers=api.as_viewer()).status_code == 200
    paged = api.http.get(f"/api/campaigns/{cid}/rejects", headers=api.as_viewer()).json()
    assert paged["total"] == 2 and len(paged["rejects"]) == 2  # the paging JSON form stays
    refused = api.http.get(f"/api/campaigns/{cid}/rejects?format=pdf", headers=api.as_viewer())
    assert refused.status_code == 400 and refused.json()["error"] == refused.json()["message"]


def test_pause_and_resume_are_on_the_timeline_with_the_tokens_name(api: ConsoleHandle) -> None:
    cid = submit(api, small_csv(30, bad=0))["id"]
    paused = api.http.post(f"/api/campaigns/{cid}/pause", headers=api.as_admin())
    assert paused.status_code == 200, paused.text
    waiting = paused.json()["waiting_for"]
    # No worker runs in this test: that comes first, the pause is still on the timeline.
    assert waiting["kind"] in ("no_worker", "paused")
    time.sleep(0.01)
    assert api.http.post(f"/api/campaigns/{cid}/resume", headers=api.as_admin()).status_code == 200
    timeline = api.http.get(f"/api/campaigns/{cid}/summary", headers=api.as_viewer()).json()["timeline"]
    events = [(e["kind"], e["by"]) for e in timeline["events"]]
    assert ("paused", "ops") in events and ("resumed", "ops") in events
    (pause,) = timeline["pauses"]
    assert pause["by"] == "ops" and pause["to"] is not None and pause["to"] >= pause["from"]


def test_the_list_says_what_each_campaign_waits_for_and_the_workers_limit(api: ConsoleHandle) -> None:
    cid = submit(api, small_csv(10, bad=0))["id"]
    body = api.http.get("/api/campaigns", headers=api.as_viewer()).json()
    (item,) = body["campaigns"]
    assert item["id"] == cid and item["waiting_for"]["kind"] == "no_worker"
    assert "worker" in item["waiting_for"]["sentence"] and body["pace_limit_source"] == "settings"
    from dispatcher.sending.health import WorkerRegistry

    WorkerRegistry(api.console.store.redis, api.console.store.keys).publish_limits(120, 0.0, ttl_s=30)
    body = api.http.get("/api/campaigns", headers=api.as_viewer()).json()
    assert (body["pace_limit_per_s"], body["pace_limit_source"]) == (200.0, "workers")


def test_the_preflight_shows_what_costs_money(api: ConsoleHandle) -> None:
    rows = "phone,name\n+34611000001,Ana\n+34611000002,Zoé 😀\n+34611000003,Luis\n12,bad\n"
    response = api.http.post("/api/preflight", headers=api.as_viewer(), data=OPTIONS,
                             files={"file": ("l.csv", rows.encode(), "text/csv")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [p["text"] for p in body["preview"]] == ["Hola Ana", "Hola Zoé 😀", "Hola Luis"]
    assert body["preview"][1]["encoding"] == "Unicode" and body["preview"][0]["parts"] == 1
    chars = {c["char"]: c["messages"] for c in body["unicode_chars"]}
    assert chars == {"😀": 1}  # é is in GSM-7: only the emoji forces Unicode
    assert body["parts_per_message"] == {"1": 3} and body["unicode_extra_parts"] == 0
    assert body["countries"][0]["country"] == "ES" and body["countries"][0]["unit_price"] == "0.045"
    assert body["sample_rejects"] == [{"row": 5, "value": "12", "reason": body["sample_rejects"][0]["reason"]}]
    assert sum(body["reject_reasons"].values()) == 1
    for key in ("cost", "message_cost", "lookup_cost", "balance", "unicode_extra_cost"):
        assert isinstance(body[key], str), key
    assert body["currency_exponent"] == 2 and body["by_country"]["ES"]["cost"] == body["countries"][0]["cost"]


def test_a_schedule_is_edited_paused_and_its_removal_asks_about_its_current_campaign(api: ConsoleHandle) -> None:
    made = api.http.post("/api/schedules", headers=api.as_admin(),
                         data={**OPTIONS, "name": "daily", "cron": "0 9 * * *", "tz": "Europe/Madrid",
                               "window": "09:00-21:00"},
                         files={"file": ("list.csv", small_csv(5, bad=0), "text/csv")})
    assert made.status_code == 201, made.text
    row = made.json()
    assert (row["window"], row["text"], row["sender"], row["tz"]) == ("09:00-21:00", "Hola {name}", "ACME",
                                                                      "Europe/Madrid")
    assert len(row["next_runs"]) == 5 and row["next_runs"][0]["at_local"].endswith(("+01:00", "+02:00"))
    edited = api.http.patch("/api/schedules/daily", headers=api.as_admin(),
                            data={"text": "Buenos días {name}", "cron": "30 10 * * MON"})
    assert edited.status_code == 200, edited.text
    assert (edited.json()["text"], edited.json()["cron"], edited.json()["window"]) == (
        "Buenos días {name}", "30 10 * * MON", "09:00-21:00")
    assert edited.json()["file"] == "daily.csv"
    bad = api.http.patch("/api/schedules/daily", headers=api.as_admin(), data={"colour": "red"})
    assert bad.status_code == 422 and "colour" in bad.json()["error"]
    paused = api.http.post("/api/schedules/daily/pause", headers=api.as_admin())
    assert paused.status_code == 200 and paused.json()["paused"] is True and paused.json()["next_runs"] == []
    assert api.http.post("/api/schedules/daily/resume", headers=api.as_admin()).json()["paused"] is False
    cid = submit(api, small_csv(5, bad=0))["id"]
    api.console.schedules.set_state("daily", last_campaign=cid)  # as if its last firing created it
    asked = api.http.delete("/api/schedules/daily", headers=api.as_admin())
    assert asked.status_code == 409 and asked.json()["current_campaign"]["id"] == cid
    assert "keep" in asked.json()["error"] and asked.json()["message"] == asked.json()["error"]
    removed = api.http.delete("/api/schedules/daily?current=cancel", headers=api.as_admin())
    assert removed.status_code == 200, removed.text
    assert removed.json()["current"]["action"] == "cancelled"
    assert api.console.store.get(cid).state == "cancelled"
    assert api.http.get("/api/schedules/daily", headers=api.as_viewer()).status_code == 404


def test_errors_carry_the_sentence_under_error_and_message(api: ConsoleHandle) -> None:
    missing = api.http.get("/api/campaigns/nope", headers=api.as_viewer())
    assert missing.status_code == 404 and missing.json()["error"] == missing.json()["message"]
    page = api.http.get("/no/such/page")
    assert page.json() == {"error": "no such page", "message": "no such page"}


def test_the_keep_columns_form_field_carries_the_lists_columns_into_the_report(api: ConsoleHandle) -> None:
    cid = submit(api, small_csv(3, bad=0), keep_columns="name")["id"]
    report = rows_of(api.http.get(f"/api/campaigns/{cid}/report?format=csv", headers=api.as_viewer()).text)
    assert [r["name"] for r in report] == ["Cliente 0", "Cliente 1", "Cliente 2"]
    refused = api.http.post("/api/campaigns", headers=api.as_admin(), data={**OPTIONS, "keep_columns": "nope"},
                            files={"file": ("list.csv", small_csv(3, bad=0), "text/csv")})
    assert refused.status_code == 422 and "'nope'" in refused.json()["error"]
    assert "list.csv" in refused.json()["error"] and "dispatcher-upload" not in refused.json()["error"]
