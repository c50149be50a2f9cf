"""The console's edges at the ASGI level (issue 21): behind a TLS proxy, body and upload caps, paged
rejects, atomic schedules. The abuse suite (tests/abuse/test_console.py) attacks a real process."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import redis
from starlette.testclient import TestClient

from dispatcher.console.app import create_app
from dispatcher.console.auth import SESSION_COOKIE
from dispatcher.console.uploads import TooLarge, measure
from dispatcher.preflight.rejects import Reject
from dispatcher.preflight.result import PreflightResult
from dispatcher.settings import Settings
from tests.helpers import UPLOAD_OPTIONS as OPTIONS
from tests.helpers import ConsoleHandle, build_console, small_csv
from tests.helpers import upload_campaign as submit


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_the_cookie_is_secure_over_https_and_changes_pass_with_the_origin_the_request_was_made_to(
        console_settings: Settings, redis_client: redis.Redis, scheme: str) -> None:
    # TestClient's base URL sets the ASGI scope's scheme, as uvicorn does from a trusted X-Forwarded-Proto.
    console = build_console(console_settings, redis_client)
    token = console.tokens.create("ops", "admin")
    other = "http" if scheme == "https" else "https"
    with TestClient(create_app(console, sample=False), base_url=f"{scheme}://console.example") as http:
        signed = http.post("/api/session", json={"token": token}, headers={"Origin": f"{scheme}://console.example"})
        assert signed.status_code == 200, signed.text
        cookie = signed.headers["set-cookie"]
        assert ("Secure" in cookie) == (scheme == "https")
        csrf = signed.json()["csrf"]
        for origin in (f"{scheme}://console.example", f"{scheme}://CONSOLE.example/",
                       f"{scheme}://console.example:{443 if scheme == 'https' else 80}"):
            same = http.post("/api/campaigns/nope/pause", headers={"X-CSRF-Token": csrf, "Origin": origin})
            assert same.status_code == 404, (origin, same.text)  # past the checks: no such campaign
        for origin in (f"{other}://console.example", f"{scheme}://console.example:8443", f"{scheme}://evil.example",
                       "null", f"{scheme}://console.example:port"):
            refused = http.post("/api/campaigns/nope/pause", headers={"X-CSRF-Token": csrf, "Origin": origin})
            assert refused.status_code == 403, origin
        out = http.delete("/api/session", headers={"X-CSRF-Token": csrf, "Origin": f"{scheme}://console.example"})
        assert out.status_code == 200
        assert ("secure" in out.headers["set-cookie"].lower()) == (scheme == "https")


def test_a_sign_in_body_over_4096_bytes_is_refused_413_with_or_without_content_length(api: ConsoleHandle) -> None:
    big = b'{"token": "' + b"x" * 5000 + b'"}'
    assert api.http.post("/api/session", content=big).status_code == 413

    def chunks() -> object:
        yield big[:100]
        yield big[100:]

    answer = api.http.post("/api/session", content=chunks())  # type: ignore[arg-type]
    assert answer.status_code == 413 and "4096" in answer.json()["error"]
    assert api.http.post("/api/session", json={"token": api.viewer}).status_code == 200


def test_a_viewer_preflight_without_lookups_is_allowed_and_with_paid_lookups_is_refused(api: ConsoleHandle) -> None:
    files = {"file": ("list.csv", small_csv(5), "text/csv")}
    assert api.http.post("/api/preflight", headers=api.as_viewer(), data=OPTIONS, files=files).status_code == 200
    refused = api.http.post("/api/preflight", headers=api.as_viewer(), data={**OPTIONS, "no_hlr": "0"}, files=files)
    assert refused.status_code == 403 and "viewer" in refused.json()["error"]


def test_measure_refuses_files_past_the_expanded_bytes_the_ratio_or_the_rows(tmp_path: Path) -> None:
    plain = tmp_path / "list.csv"
    plain.write_bytes(small_csv(100))
    measure(plain, "list.csv", 10**9, 101, 100)
    with pytest.raises(TooLarge, match="more than 99 rows"):
        measure(plain, "list.csv", 10**9, 99, 100)
    packed = tmp_path / "list.csv.gz"
    packed.write_bytes(gzip.compress(b"phone\n" + b"12345\n" * 1_000_000))
    with pytest.raises(TooLarge, match="DISPATCHER_MAX_UPLOAD_RATIO"):
        measure(packed, "list.csv.gz", 10**9, 10**7, 100)
    with pytest.raises(TooLarge, match="DISPATCHER_MAX_UPLOAD_EXPANDED_MB"):
        measure(packed, "list.csv.gz", 2_000_000, 10**7, 10**6)
    measure(packed, "list.csv.gz", 10**9, 10**7, 10**6)
    book = tmp_path / "book.xlsx"
    with zipfile.ZipFile(book, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", "<sheetData>" + '<row r="1"><c/></row>' * 50 + "</sheetData>")
    measure(book, "book.xlsx", 10**9, 49, 100)
    with pytest.raises(TooLarge, match=r"book\.xlsx has more than 48 rows"):
        measure(book, "book.xlsx", 10**9, 48, 100)


def test_an_answer_lists_at_most_the_capped_rejects_and_the_rejects_route_pages(api: ConsoleHandle) -> None:
    capped = api.console.settings.with_overrides(max_answer_rejects=3)
    api.console.settings = capped
    body = api.http.post("/api/preflight", headers=api.as_viewer(), data=OPTIONS,
                         files={"file": ("list.csv", small_csv(5, bad=7), "text/csv")}).json()
    assert body["rejected"] == 7 and body["rejects_listed"] == 3 and len(body["rejects"]) == 3
    cid = submit(api, small_csv(5, bad=7))["id"]
    whole = api.http.get(f"/api/campaigns/{cid}/rejects", headers=api.as_viewer()).json()
    assert whole["total"] == 7 and len(whole["rejects"]) == 7 and sum(whole["reasons"].values()) == 7
    page = api.http.get(f"/api/campaigns/{cid}/rejects?offset=5&limit=4", headers=api.as_viewer()).json()
    assert page["rejects"] == whole["rejects"][5:] and page["total"] == 7 and page["reasons"] == whole["reasons"]
    assert api.http.get(f"/api/campaigns/{cid}/rejects?offset=70", headers=api.as_viewer()).json()["rejects"] == []
    assert api.http.get(f"/api/campaigns/{cid}/rejects?limit=0", headers=api.as_viewer()).status_code == 400


def test_to_json_without_a_cap_lists_every_reject_as_the_cli_does() -> None:
    rejects = [Reject(i, "1", "bad") for i in range(2, 12)]
    result = PreflightResult(file="l.csv", source="l.csv", phone_column="phone", rows=10, valid=0, rejected=10,
                             duplicates=0, suppressed=0, parts=0, unicode=0, message_cost=0.0, lookups=0,
                             lookups_cached=0, lookup_cost=0.0, currency="EUR", balance=1.0, by_country={},
                             rejects=rejects, messages=pd.DataFrame())
    assert len(result.to_json()["rejects"]) == 10
    assert result.to_json(max_rejects=4)["rejects"] == [r.to_json() for r in rejects[:4]]


def test_a_schedule_whose_redis_write_fails_puts_the_previous_file_back(api: ConsoleHandle,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    schedule = {**OPTIONS, "name": "s1", "every": "1h"}
    first = small_csv(4)
    assert api.http.post("/api/schedules", headers=api.as_admin(), data=schedule,
                         files={"file": ("a.csv", first, "text/csv")}).status_code == 201
    directory = Path(api.console.settings.console_data_dir).resolve() / "schedules"

    def broken(*_: object) -> None:
        raise redis.exceptions.ConnectionError("gone")

    monkeypatch.setattr(api.console.entries, "save_entry", broken)
    for name, body in (("b.csv", small_csv(6)), ("b.csv.gz", gzip.compress(small_csv(6)))):
        answer = api.http.post("/api/schedules", headers=api.as_admin(), data=schedule,
                               files={"file": (name, body, "text/csv")})
        assert answer.status_code == 503, answer.text
        assert {p.name: p.read_bytes() for p in directory.iterdir()} == {"s1.csv": first}


def test_a_sign_out_from_another_origin_ends_no_session(api: ConsoleHandle) -> None:
    signed = api.http.post("/api/session", json={"token": api.admin})
    csrf = signed.json()["csrf"]
    assert api.http.cookies.get(SESSION_COOKIE)
    assert api.http.delete("/api/session", headers={"X-CSRF-Token": csrf, "Origin": "http://evil.test"}).status_code \
        == 403
    assert api.http.get("/api/session").status_code == 200
