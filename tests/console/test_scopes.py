"""Tokens scoped to accounts (issue 24): a token with ``--account b`` reaches only b's campaigns,
schedules, reports and metrics; the others answer 404 exactly as a missing one, so their existence
does not leak. A token without accounts reaches everything, as before.

Campaigns are submitted through the API and then given an account in their hash, the field the
account-aware submit writes (absent: ``default``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client.core import CounterMetricFamily

from dispatcher.console.auth import TokenInfo
from dispatcher.console.metrics import _only_accounts
from dispatcher.console.schedules import schedule_dir
from dispatcher.errors import InputError
from dispatcher.sending.accounts import AccountBook
from dispatcher.sending.schedules.definition import ScheduleDef
from tests.helpers import SANDBOX_TOKEN, UPLOAD_OPTIONS, ConsoleHandle, small_csv, upload_campaign

#: A campaign id no campaign has, as long as a real one (the 404 bodies are compared word for word).
MISSING = "0123456789"


@pytest.fixture()
def fleet(api: ConsoleHandle) -> Iterator[dict[str, Any]]:
    """Campaigns of accounts a1, b and default (old, no field), and tokens scoped to b. The accounts
    exist (with the sandbox's token), so forms may name them."""
    book = AccountBook(api.console.store.redis, api.console.store.keys, api.console.settings)
    for account, organization in (("a1", "acme"), ("b", "beta")):
        book.add(account, SANDBOX_TOKEN, organization=organization)
    ids = {}
    for account in ("a1", "b", "default"):
        cid = upload_campaign(api, name=f"of-{account}")["id"]
        if account != "default":
            api.console.store.redis.hset(api.console.store.keys.campaign(cid), "account", account)
        ids[account] = cid
    yield {"ids": ids, "viewer_b": api.console.tokens.create("viewer-b", "viewer", accounts=["b"]),
           "admin_b": api.console.tokens.create("admin-b", "admin", accounts=["b"])}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def missing_body(api: ConsoleHandle, method: str, path: str, token: str, cid: str) -> dict[str, Any]:
    """The 404 body for ``cid``, with the id replaced by ``MISSING`` (to compare with a missing one's)."""
    response = api.http.request(method, path.format(cid=cid), headers=bearer(token))
    assert response.status_code == 404, (method, path, response.text)
    return {k: v.replace(cid, MISSING) if isinstance(v, str) else v for k, v in response.json().items()}


CAMPAIGN_READS = ["/api/campaigns/{cid}", "/api/campaigns/{cid}/report", "/api/campaigns/{cid}/report?format=xlsx",
                  "/api/campaigns/{cid}/rejects", "/api/campaigns/{cid}/rejects?format=csv",
                  "/api/campaigns/{cid}/summary", "/api/campaigns/{cid}/series"]


def test_a_viewer_scoped_to_b_lists_only_bs_campaigns_and_gets_404_for_a1s(
        api: ConsoleHandle, fleet: dict[str, Any]) -> None:
    ids, token = fleet["ids"], fleet["viewer_b"]
    listed = api.http.get("/api/campaigns", headers=bearer(token)).json()
    assert [c["id"] for c in listed["campaigns"]] == [ids["b"]] and listed["total"] == 1
    assert list(listed["pace"]) == [ids["b"]]
    for path in CAMPAIGN_READS:
        assert api.http.get(path.format(cid=ids["b"]), headers=bearer(token)).status_code == 200, path
        for other in (ids["a1"], ids["default"]):
            # Word for word what a missing campaign gets: the campaign's existence does not leak.
            assert missing_body(api, "GET", path, token, other) == missing_body(api, "GET", path, token, MISSING)


def test_an_admin_scoped_to_b_cannot_pause_resume_or_cancel_a1s_campaign(
        api: ConsoleHandle, fleet: dict[str, Any]) -> None:
    ids, token = fleet["ids"], fleet["admin_b"]
    before = api.console.store.get(ids["a1"]).state
    for action in ("pause", "resume", "cancel"):
        path = f"/api/campaigns/{{cid}}/{action}"
        assert missing_body(api, "POST", path, token, ids["a1"]) == missing_body(api, "POST", path, token, MISSING)
    assert api.console.store.get(ids["a1"]).state == before
    paused = api.http.post(f"/api/campaigns/{ids['b']}/pause", headers=bearer(token))
    assert paused.status_code == 200 and paused.json()["state"] == "paused"


def test_an_unscoped_token_sees_and_changes_every_accounts_campaigns(
        api: ConsoleHandle, fleet: dict[str, Any]) -> None:
    ids = fleet["ids"]
    listed = api.http.get("/api/campaigns", headers=api.as_viewer()).json()
    assert {c["id"] for c in listed["campaigns"]} == set(ids.values()) and listed["total"] == 3
    for cid in ids.values():
        assert api.http.get(f"/api/campaigns/{cid}", headers=api.as_viewer()).status_code == 200
    assert api.http.post(f"/api/campaigns/{ids['a1']}/pause", headers=api.as_admin()).status_code == 200


def test_a_scoped_list_is_paged_within_the_scope(api: ConsoleHandle, fleet: dict[str, Any]) -> None:
    more = upload_campaign(api, name="of-b-too")["id"]
    api.console.store.redis.hset(api.console.store.keys.campaign(more), "account", "b")
    token = fleet["viewer_b"]
    first = api.http.get("/api/campaigns?limit=1", headers=bearer(token)).json()
    second = api.http.get("/api/campaigns?limit=1&offset=1", headers=bearer(token)).json()
    assert [c["id"] for c in first["campaigns"]] == [more] and first["total"] == 2
    assert [c["id"] for c in second["campaigns"]] == [fleet["ids"]["b"]]
    assert api.http.get("/api/campaigns?offset=2", headers=bearer(token)).json()["campaigns"] == []
    api.console.store.redis.delete(api.console.store.keys.campaign(more))  # its data expired
    assert [c["id"] for c in api.http.get("/api/campaigns", headers=bearer(token)).json()["campaigns"]] == [
        fleet["ids"]["b"]]
    assert api.http.get("/api/campaigns", headers=bearer(token)).json()["total"] == 1


def test_a_scoped_admin_may_not_submit_or_preflight_for_another_account(
        api: ConsoleHandle, fleet: dict[str, Any]) -> None:
    before = api.console.store.count()
    for path in ("/api/campaigns", "/api/preflight"):
        for fields, account in (({"account": "a1"}, "a1"), ({}, "default")):
            response = api.http.post(path, headers=bearer(fleet["admin_b"]), data={**UPLOAD_OPTIONS, **fields},
                                     files={"file": ("list.csv", small_csv(), "text/csv")})
            assert response.status_code == 403, (path, fields, response.text)
            assert response.json()["error"] == f"token 'admin-b' may not use account '{account}'."
    assert api.console.store.count() == before
    checked = api.http.post("/api/preflight", headers=bearer(fleet["viewer_b"]),
                            data={**UPLOAD_OPTIONS, "account": "b"},
                            files={"file": ("list.csv", small_csv(), "text/csv")})
    assert checked.status_code == 200, checked.text


def save_schedule(api: ConsoleHandle, name: str, account: str) -> None:
    """A schedule of ``account`` stored directly (as the account-aware ``schedule add`` would)."""
    file = schedule_dir(api.console) / f"{name}.csv"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(small_csv())
    api.console.schedules.save(ScheduleDef(name=name, file=str(file), cron="0 9 * * MON",
                                           options={"text": "Hola", "sender": "ACME", "country": "ES", "hlr": False},
                                           account=account).validated())


def test_a_token_scoped_to_b_reaches_only_bs_schedules(api: ConsoleHandle, fleet: dict[str, Any]) -> None:
    save_schedule(api, "mondays-a1", "a1")
    save_schedule(api, "mondays-b", "b")
    viewer, admin = fleet["viewer_b"], fleet["admin_b"]
    listed = api.http.get("/api/schedules", headers=bearer(viewer)).json()["schedules"]
    assert [s["name"] for s in listed] == ["mondays-b"]
    assert {s["name"] for s in api.http.get("/api/schedules", headers=api.as_viewer()).json()["schedules"]} == {
        "mondays-a1", "mondays-b"}
    assert api.http.get("/api/schedules/mondays-b", headers=bearer(viewer)).status_code == 200

    def answer(method: str, path: str, name: str, **kwargs: Any) -> tuple[int, str]:
        response = api.http.request(method, path.format(name=name), headers=bearer(admin), **kwargs)
        return response.status_code, response.json()["error"].replace(name, "NAME")

    for method, path, kwargs in [("GET", "/api/schedules/{name}", {}), ("DELETE", "/api/schedules/{name}", {}),
                                 ("POST", "/api/schedules/{name}/pause", {}), ("POST", "/api/schedules/{name}/run", {}),
                                 ("PATCH", "/api/schedules/{name}", {"data": {"text": "Adios"}})]:
        hidden = answer(method, path, "mondays-a1", **kwargs)
        assert hidden[0] == 404 and hidden == answer(method, path, "nothing-here", **kwargs), (method, path)
    assert api.console.schedules.get("mondays-a1").options["text"] == "Hola"
    assert not api.console.schedules.state("mondays-a1").get("paused")
    # Replacing another account's schedule by adding one of the same name is refused too.
    taken = api.http.post("/api/schedules", headers=bearer(admin), files={"file": ("l.csv", small_csv(), "text/csv")},
                          data={**UPLOAD_OPTIONS, "name": "mondays-a1", "cron": "0 9 * * *", "account": "b"})
    assert taken.status_code == 403 and api.console.schedules.get("mondays-a1").account == "a1"
    edited = api.http.patch("/api/schedules/mondays-b", headers=bearer(admin), data={"text": "Adios"})
    assert edited.status_code == 200, edited.text
    assert api.console.schedules.get("mondays-b").account == "b"  # an edit keeps the account


def test_a_scoped_token_adds_schedules_only_for_its_accounts(api: ConsoleHandle, fleet: dict[str, Any]) -> None:
    def add(name: str, account: str) -> Any:
        return api.http.post("/api/schedules", headers=bearer(fleet["admin_b"]),
                             files={"file": ("l.csv", small_csv(), "text/csv")},
                             data={**UPLOAD_OPTIONS, "name": name, "cron": "0 9 * * *", "account": account})

    refused = add("for-a1", "a1")
    assert refused.status_code == 403 and "may not use account 'a1'" in refused.json()["error"]
    assert add("for-b", "b").status_code == 201
    assert api.console.schedules.names() == ["for-b"] and api.console.schedules.get("for-b").account == "b"


def test_a_scoped_token_scrapes_only_its_accounts_campaign_series(api: ConsoleHandle, fleet: dict[str, Any]) -> None:
    ids = fleet["ids"]
    scoped = api.http.get("/metrics", headers=bearer(fleet["viewer_b"])).text
    assert f'campaign="{ids["b"]}"' in scoped
    assert f'campaign="{ids["a1"]}"' not in scoped and f'campaign="{ids["default"]}"' not in scoped
    assert "dispatcher_bulk_requests" not in scoped  # every account's traffic, unlabelled: left out
    everything = api.http.get("/metrics", headers=api.as_viewer()).text
    assert all(f'campaign="{cid}"' in everything for cid in ids.values())
    assert "dispatcher_bulk_requests" in everything


def test_worker_series_labelled_with_an_account_are_kept_only_for_the_tokens_accounts() -> None:
    token = TokenInfo(name="t", role="viewer", created_at=0.0, accounts=("b",))
    labelled = CounterMetricFamily("dispatcher_bulk_requests", "answers", labels=["account", "status"])
    labelled.add_metric(["a1", "200"], 5)
    labelled.add_metric(["b", "200"], 7)
    assert _only_accounts(labelled, token)
    assert [(s.labels["account"], s.value) for s in labelled.samples] == [("b", 7)]
    unlabelled = CounterMetricFamily("dispatcher_rate_limited", "429s", value=3)
    assert not _only_accounts(unlabelled, token)


def test_a_dashboard_session_inherits_its_tokens_scope(api: ConsoleHandle, fleet: dict[str, Any]) -> None:
    signed = api.http.post("/api/session", json={"token": fleet["admin_b"]})
    assert signed.status_code == 200 and signed.json()["accounts"] == ["b"]
    csrf = signed.json()["csrf"]
    assert [c["id"] for c in api.http.get("/api/campaigns").json()["campaigns"]] == [fleet["ids"]["b"]]
    other = fleet["ids"]["a1"]
    assert api.http.get(f"/api/campaigns/{other}").status_code == 404
    assert api.http.post(f"/api/campaigns/{other}/pause", headers={"X-CSRF-Token": csrf}).status_code == 404


def test_tokens_keep_their_scope_and_older_tokens_reach_every_account(api: ConsoleHandle) -> None:
    tokens = api.console.tokens
    scoped = tokens.authenticate(tokens.create("two", "viewer", accounts=["b", "a1", "b"]))
    assert scoped is not None and scoped.accounts == ("a1", "b") and scoped.to_json()["accounts"] == ["a1", "b"]
    old = tokens.authenticate(api.viewer)  # stored without "accounts", as before scopes
    assert old is not None and not old.scoped and old.sees("anything") and old.to_json()["accounts"] is None
    assert replace(old, accounts=("b",)).sees("b") and not replace(old, accounts=("b",)).sees("a1")


def test_a_token_for_an_unknown_account_is_refused_in_one_sentence(api: ConsoleHandle) -> None:
    with pytest.raises(InputError, match=r"^there is no account named 'nope'; `dispatcher account list` shows them\.$"):
        api.console.tokens.create("x", "viewer", accounts=["nope"], known=["default", "b"])
    assert [t.name for t in api.console.tokens.list()] == ["ops", "watcher"]
