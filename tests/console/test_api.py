"""The console's HTTP API on real Redis and the real sandbox: every status code the issue names."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from dispatcher.console.auth import SESSION_COOKIE
from dispatcher.console.schedules import schedule_dir
from tests.helpers import UPLOAD_OPTIONS, ConsoleHandle, small_csv, upload_campaign

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "campaign.csv"


def test_every_api_route_answers_401_without_a_valid_token(api: ConsoleHandle) -> None:
    for method, path in [("GET", "/api/campaigns"), ("GET", "/api/campaigns/x"), ("POST", "/api/campaigns"),
                         ("POST", "/api/preflight"), ("POST", "/api/campaigns/x/pause"), ("GET", "/api/schedules"),
                         ("DELETE", "/api/schedules/x"), ("GET", "/api/campaigns/x/report"), ("GET", "/metrics")]:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {api.admin}"}):
            response = api.http.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, response.text)
            assert set(response.json()) == {"error", "message"}  # one error shape in both servers (issue 22)


def test_a_revoked_token_is_refused_at_once(api: ConsoleHandle) -> None:
    assert api.http.get("/api/campaigns", headers=api.as_viewer()).status_code == 200
    api.console.tokens.revoke("watcher")
    assert api.http.get("/api/campaigns", headers=api.as_viewer()).status_code == 401


def test_a_viewer_reads_but_gets_403_for_every_change(api: ConsoleHandle) -> None:
    cid = upload_campaign(api)["id"]
    assert api.http.get(f"/api/campaigns/{cid}", headers=api.as_viewer()).status_code == 200
    for method, path in [("POST", "/api/campaigns"), (("POST", f"/api/campaigns/{cid}/pause")),
                         ("POST", f"/api/campaigns/{cid}/cancel"), ("POST", "/api/schedules"),
                         ("DELETE", "/api/schedules/x")]:
        response = api.http.request(method, path, headers=api.as_viewer())
        assert response.status_code == 403, (method, path)
        assert "viewer" in response.json()["error"]
    assert api.console.store.get(cid).state in ("queued", "running")


def test_preflight_answers_200_with_the_preflight_json_object(api: ConsoleHandle) -> None:
    response = api.http.post("/api/preflight", headers=api.as_viewer(), data=UPLOAD_OPTIONS,
                             files={"file": ("campaign.csv", EXAMPLE.read_bytes(), "text/csv")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["file"] == "campaign.csv" and body["rows"] == 3057
    assert body["messages"] > 2500 and body["rejected"] > 0 and Decimal(body["cost"]) > 0  # a decimal string (issue 22)
    assert {"reason", "row", "value"} <= set(body["rejects"][0])
    assert api.console.store.count() == 0  # a preflight creates nothing


def test_submit_answers_201_with_the_status_object_and_get_returns_the_same(api: ConsoleHandle) -> None:
    created = upload_campaign(api, name="spring")
    assert created["name"] == "spring" and created["total"] == 120 and created["state"] in ("queued", "running")
    assert {"id", "counts", "cost", "next_window_opens_at"} <= set(created)
    # Streamed like `dispatcher submit`: answered once the list is whole, under the user's file name.
    assert created["loading"] is None and created["preflight"]["file"] == "list.csv"
    assert created["preflight"]["valid"] == 120
    assert api.console.store.get(created["id"]).options["file"] == "list.csv"
    again = api.http.get(f"/api/campaigns/{created['id']}", headers=api.as_viewer()).json()
    assert again["id"] == created["id"] and again["total"] == 120
    rejects = api.http.get(f"/api/campaigns/{created['id']}/rejects", headers=api.as_viewer()).json()
    assert rejects["total"] == 1 and rejects["rejects"][0]["value"] == "12345"


def test_the_campaign_list_is_newest_first_and_paged(api: ConsoleHandle) -> None:
    ids = [upload_campaign(api, small_csv(5, bad=0), name=f"c{i}")["id"] for i in range(3)]
    page = api.http.get("/api/campaigns?limit=2", headers=api.as_viewer()).json()
    assert [c["id"] for c in page["campaigns"]] == ids[::-1][:2] and page["total"] == 3
    rest = api.http.get("/api/campaigns?limit=2&offset=2", headers=api.as_viewer()).json()
    assert [c["id"] for c in rest["campaigns"]] == [ids[0]]
    assert api.http.get("/api/campaigns?limit=abc", headers=api.as_viewer()).status_code == 400


def test_bad_options_and_bad_files_get_400_or_422_with_a_reason(api: ConsoleHandle) -> None:
    no_file = api.http.post("/api/campaigns", headers=api.as_admin(), data=UPLOAD_OPTIONS, files={"x": ("a", b"b")})
    assert no_file.status_code == 400 and "file" in no_file.json()["error"]
    not_form = api.http.post("/api/campaigns", headers=api.as_admin(), json={"text": "hi"})
    assert not_form.status_code == 400
    for fields, needle in [({"text": ""}, "--text"), ({"country": "XX"}, "XX"), ({"max_cost": "lots"}, "max_cost"),
                           ({"window": "9-5"}, "--window"), ({"from": "A-SENDER-THAT-IS-TOO-LONG"}, "")]:
        response = api.http.post("/api/campaigns", headers=api.as_admin(), data={**UPLOAD_OPTIONS, **fields},
                                 files={"file": ("list.csv", small_csv(), "text/csv")})
        assert response.status_code == 422, (fields, response.text)
        assert needle in response.json()["error"]
    garbage = api.http.post("/api/campaigns", headers=api.as_admin(), data=UPLOAD_OPTIONS,
                            files={"file": ("list.csv", b"nothing,here\n1,2\n", "text/csv")})
    assert garbage.status_code == 422 and garbage.json()["error"]
    unsendable = api.http.post("/api/campaigns", headers=api.as_admin(), data=UPLOAD_OPTIONS,
                               files={"file": ("bad.csv", small_csv(0, bad=2), "text/csv")})
    assert unsendable.status_code == 422 and "no row of bad.csv can be sent" in unsendable.json()["error"]
    assert api.console.store.count() == 0


def test_a_budget_refusal_is_422_with_the_preflight_object(api: ConsoleHandle) -> None:
    response = api.http.post("/api/campaigns", headers=api.as_admin(), data={**UPLOAD_OPTIONS, "max_cost": "0.01"},
                             files={"file": ("list.csv", small_csv(), "text/csv")})
    assert response.status_code == 422
    body = response.json()
    assert "0.01" in body["error"] and body["preflight"]["messages"] == 120
    assert api.console.store.count() == 0


def test_an_upload_over_the_cap_is_413_and_creates_nothing(api: ConsoleHandle) -> None:
    big = small_csv(60_000)  # about 1.4 MB against a 1 MB cap
    assert len(big) > 1_000_000
    response = api.http.post("/api/campaigns", headers=api.as_admin(), data=UPLOAD_OPTIONS,
                             files={"file": ("list.csv", big, "text/csv")})
    assert response.status_code == 413 and "MB" in response.json()["error"]

    def chunks():  # no Content-Length: the cap must hold while the body streams in
        boundary = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"l.csv\"\r\n\r\n"
        yield boundary
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536]
        yield b"\r\n--b--\r\n"

    form = {"Content-Type": "multipart/form-data; boundary=b"}
    streamed = api.http.post("/api/preflight", headers={**api.as_admin(), **form}, content=chunks())
    assert streamed.status_code == 413
    assert api.console.store.count() == 0


def test_unknown_campaigns_and_schedules_are_404(api: ConsoleHandle) -> None:
    for method, path in [("GET", "/api/campaigns/nope"), ("POST", "/api/campaigns/nope/pause"),
                         ("GET", "/api/campaigns/nope/report"), ("GET", "/api/campaigns/nope/rejects"),
                         ("DELETE", "/api/schedules/nope")]:
        response = api.http.request(method, path, headers=api.as_admin())
        assert response.status_code == 404, (method, path, response.text)
        assert "nope" in response.json()["error"]


def test_pause_resume_cancel_answer_200_with_the_new_state_and_409_when_not_allowed(api: ConsoleHandle) -> None:
    cid = upload_campaign(api)["id"]
    paused = api.http.post(f"/api/campaigns/{cid}/pause", headers=api.as_admin())
    assert paused.status_code == 200 and paused.json()["state"] == "paused"
    resumed = api.http.post(f"/api/campaigns/{cid}/resume", headers=api.as_admin())
    assert resumed.status_code == 200 and resumed.json()["state"] == "running"
    cancelled = api.http.post(f"/api/campaigns/{cid}/cancel", headers=api.as_admin())
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["counts"]["cancelled"] == 120
    for action in ("pause", "resume"):
        refused = api.http.post(f"/api/campaigns/{cid}/{action}", headers=api.as_admin())
        assert refused.status_code == 409 and "cancelled" in refused.json()["error"]


def test_the_report_is_spreadsheet_safe_csv_or_parquet(api: ConsoleHandle) -> None:
    cid = upload_campaign(api)["id"]
    response = api.http.get(f"/api/campaigns/{cid}/report", headers=api.as_viewer())
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert f"campaign-{cid}.csv" in response.headers["content-disposition"]
    frame = pd.read_csv(io.BytesIO(response.content), dtype=str, keep_default_na=False)
    assert len(frame) == 120 and frame["to"].str.fullmatch(r"\+34[0-9]{9}").all()  # E.164 stays as it is
    xlsx = api.http.get(f"/api/campaigns/{cid}/report?format=xlsx", headers=api.as_viewer())
    assert xlsx.status_code == 200 and f"campaign-{cid}.xlsx" in xlsx.headers["content-disposition"]
    assert len(pd.read_excel(io.BytesIO(xlsx.content), dtype=str)) == 120
    parquet = api.http.get(f"/api/campaigns/{cid}/report?format=parquet", headers=api.as_viewer())
    assert parquet.status_code == 200 and len(pd.read_parquet(io.BytesIO(parquet.content))) == 120
    assert api.http.get(f"/api/campaigns/{cid}/report?format=xml", headers=api.as_viewer()).status_code == 400


def test_schedules_are_added_listed_and_removed_with_their_file(api: ConsoleHandle) -> None:
    response = api.http.post("/api/schedules", headers=api.as_admin(),
                             data={**UPLOAD_OPTIONS, "name": "monday", "cron": "0 9 * * MON", "tz": "Europe/Madrid"},
                             files={"file": ("list.csv", small_csv(), "text/csv")})
    assert response.status_code == 201, response.text
    assert response.json()["file"] == "monday.csv"  # its name only: no answer names a server path
    kept = schedule_dir(api.console) / "monday.csv"
    assert kept.exists()
    listed = api.http.get("/api/schedules", headers=api.as_viewer()).json()["schedules"]
    assert [s["name"] for s in listed] == ["monday"] and listed[0]["next_run"] > 0
    bad = api.http.post("/api/schedules", headers=api.as_admin(),
                        data={**UPLOAD_OPTIONS, "name": "x", "cron": "whenever"},
                        files={"file": ("list.csv", small_csv(), "text/csv")})
    assert bad.status_code == 422 and "cron" in bad.json()["error"]
    assert api.http.delete("/api/schedules/monday", headers=api.as_admin()).status_code == 200
    assert not kept.exists()
    assert api.http.get("/api/schedules", headers=api.as_viewer()).json()["schedules"] == []


def test_openapi_describes_every_route(api: ConsoleHandle) -> None:
    doc = api.http.get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in ("/api/preflight", "/api/campaigns", "/api/campaigns/{cid}", "/api/campaigns/{cid}/pause",
                 "/api/campaigns/{cid}/report", "/api/campaigns/{cid}/rejects", "/api/schedules",
                 "/api/schedules/{name}", "/metrics"):
        assert path in doc["paths"], path


@pytest.mark.parametrize("role", ["admin", "viewer"])
def test_the_dashboard_session_is_an_httponly_strict_cookie_and_changes_need_the_csrf_token(
        api: ConsoleHandle, role: str) -> None:
    token = api.admin if role == "admin" else api.viewer
    assert api.http.post("/api/session", json={"token": "wrong"}).status_code == 401
    signed = api.http.post("/api/session", json={"token": token})
    assert signed.status_code == 200
    cookie = signed.headers["set-cookie"]
    assert SESSION_COOKIE in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert token not in cookie
    csrf = signed.json()["csrf"]
    assert api.http.get("/api/campaigns").status_code == 200  # the cookie alone reads
    no_csrf = api.http.post("/api/campaigns/x/pause")
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["error"]
    other_site = api.http.post("/api/campaigns/x/pause", headers={"X-CSRF-Token": csrf, "Origin": "http://evil.test"})
    assert other_site.status_code == 403
    with_csrf = api.http.post("/api/campaigns/x/pause", headers={"X-CSRF-Token": csrf})
    assert with_csrf.status_code == (404 if role == "admin" else 403)
    assert api.http.delete("/api/session").status_code == 403  # a forged sign-out ends nothing
    assert api.http.get("/api/campaigns").status_code == 200
    assert api.http.delete("/api/session", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert api.http.get("/api/campaigns").status_code == 401
