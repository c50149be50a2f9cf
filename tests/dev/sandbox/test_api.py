"""The sandbox's Instasent endpoints over real HTTP: auth, paths, SMS, lookups, account, prices."""

from __future__ import annotations

import re
from typing import Any

import httpx
import phonenumbers
import pytest

from tests.helpers import SANDBOX_TOKEN, SandboxHandle

ES_PRICE = 0.045
LOOKUP_PRICE = 0.004
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
ENTITY_ID = re.compile(r"[0-9a-f]{24}")


def sms(i: int, client_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A valid SMS item to a Spanish mobile (last digits ``00``: never an HLR rule)."""
    item = {"from": "Acme", "to": f"+34600{i:04d}00", "text": f"Hello {i}", "clientId": client_id or f"api-{i}"}
    item.update(fields)
    return item


# -- authentication -------------------------------------------------------------------------------
def test_a_bearer_header_or_an_access_token_parameter_authenticates(sandbox: SandboxHandle) -> None:
    with httpx.Client(base_url=sandbox.url, timeout=10) as anonymous:
        by_header = anonymous.get("/organization/account", headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"})
        by_param = anonymous.get("/organization/account", params={"access_token": SANDBOX_TOKEN})
        by_param_post = anonymous.post("/sms", params={"access_token": SANDBOX_TOKEN}, json=sms(1))
    assert by_header.status_code == by_param.status_code == 200
    assert by_param_post.status_code == 201


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token"},
                                     {"Authorization": f"Basic {SANDBOX_TOKEN}"},
                                     {"Authorization": "Bearer"}])
@pytest.mark.parametrize(("method", "path"), [("GET", "/sms"), ("POST", "/sms/bulk"), ("POST", "/lookup"),
                                              ("GET", "/organization/account"), ("GET", "/sms/abc")])
def test_a_missing_or_wrong_token_is_401_with_a_message_and_nothing_happens(
        sandbox: SandboxHandle, headers: dict[str, str], method: str, path: str) -> None:
    body = [sms(1)] if path == "/sms/bulk" else {"to": "+34600000100"}
    response = sandbox.http.request(method, path, headers=headers, json=body if method == "POST" else None)
    assert response.status_code == 401
    assert response.json()["message"]
    assert "x-ratelimit-limit" in response.headers
    assert sandbox.messages() == []
    assert sandbox.stats()["lookups"] == 0


def test_a_wrong_access_token_parameter_is_401(sandbox: SandboxHandle) -> None:
    response = sandbox.http.get("/sms", params={"access_token": "nope"})
    assert response.status_code == 401


def test_the_token_never_reaches_the_sandbox_log(sandbox: SandboxHandle, api: httpx.Client) -> None:
    api.post("/sms/bulk", json=[sms(1)])
    sandbox.http.get("/sms", params={"access_token": SANDBOX_TOKEN})
    sandbox.http.get("/sms", headers={"Authorization": "Bearer wrong-token"})
    log_path = sandbox.service.log_path
    assert log_path is not None
    text = log_path.read_text(errors="replace")
    assert SANDBOX_TOKEN not in text
    assert "wrong-token" not in text


# -- paths ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prefix", ["", "/transactional/v1"])
@pytest.mark.parametrize("slash", ["", "/"])
def test_every_endpoint_answers_under_both_prefixes_with_or_without_a_trailing_slash(
        api: httpx.Client, prefix: str, slash: str) -> None:
    def url(path: str) -> str:
        return f"{prefix}{path}{slash}"

    bulk = api.post(url("/sms/bulk"), json=[sms(1)])
    assert bulk.status_code == 201, bulk.text
    single = api.post(url("/sms"), json=sms(2))
    assert single.status_code == 201, single.text
    sms_id = single.json()["entity"]["id"]
    assert api.get(url(f"/sms/{sms_id}")).json()["entity"]["id"] == sms_id
    assert len(api.get(url("/sms")).json()["entities"]) == 2
    lookup = api.post(url("/lookup"), json={"to": "+34600000100"})
    assert lookup.status_code == 201, lookup.text
    lookup_id = lookup.json()["entity"]["id"]
    assert api.get(url(f"/lookup/{lookup_id}")).json()["entity"]["id"] == lookup_id
    assert [e["id"] for e in api.get(url("/lookup")).json()["entities"]] == [lookup_id]
    assert api.get(url("/organization/account")).json()["entity"]["currency"] == "EUR"
    assert api.get(url("/sms/price-profile/me/countries")).json()["entities"]
    assert api.get(url("/lookup/price-profile/me/countries")).json()["entities"]


def test_an_unknown_path_is_404_and_a_wrong_method_is_405(api: httpx.Client) -> None:
    unknown = api.get("/nothing/here")
    assert unknown.status_code == 404 and unknown.json()["message"]
    assert "x-ratelimit-remaining" in unknown.headers
    assert api.get("/sms/bulk").status_code == 405
    wrong = api.delete("/sms")
    assert wrong.status_code == 405 and wrong.json()["message"]


# -- SMS --------------------------------------------------------------------------------------------
def test_post_sms_returns_the_entity_with_every_field(api: httpx.Client) -> None:
    response = api.post("/sms", json=sms(1, "one-1"))
    assert response.status_code == 201
    entity = response.json()["entity"]
    assert ENTITY_ID.fullmatch(entity["id"])
    assert {k: entity[k] for k in ("clientId", "from", "to", "text", "status", "encoding", "parts")} == {
        "clientId": "one-1", "from": "Acme", "to": "+34600000100", "text": "Hello 1", "status": "enqueued",
        "encoding": "GSM_7BIT", "parts": 1}
    assert entity["price"] == pytest.approx(ES_PRICE)
    assert ISO_UTC.fullmatch(entity["createdAt"])


def test_post_sms_with_a_bad_item_is_400_with_field_errors_and_nothing_is_accepted(
        api: httpx.Client, sandbox: SandboxHandle) -> None:
    response = api.post("/sms", json={"from": "", "to": "666", "text": "hi"})
    assert response.status_code == 400
    body = response.json()
    assert body["message"] == "Validation failed"
    assert set(body["errors"]) == {"from", "to"}
    assert sandbox.messages() == []


def test_post_sms_with_a_body_that_is_not_an_object_is_400(api: httpx.Client) -> None:
    assert api.post("/sms", json=[sms(1)]).status_code == 400
    malformed = api.post("/sms", content=b"{nope", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400
    assert malformed.json() == {"message": "Problems parsing JSON"}


def test_post_sms_refuses_a_client_id_already_used(api: httpx.Client) -> None:
    assert api.post("/sms", json=sms(1, "dup")).status_code == 201
    again = api.post("/sms", json=sms(2, "dup"))
    assert again.status_code == 400
    assert again.json()["errors"] == {"clientId": ["already used"]}


def test_post_sms_without_funds_is_402(api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.reset(balance=0.01)
    response = api.post("/sms", json=sms(1))
    assert response.status_code == 402
    assert response.json() == {"message": "Insufficient balance"}
    assert sandbox.messages() == []


def test_get_sms_reads_a_message_back_and_an_unknown_id_is_404(api: httpx.Client) -> None:
    entity = api.post("/sms", json=sms(1)).json()["entity"]
    assert api.get(f"/sms/{entity['id']}").json() == {"entity": entity}
    missing = api.get("/sms/0123456789abcdef01234567")
    assert missing.status_code == 404
    assert missing.json() == {"message": "Not found"}


def test_get_sms_lists_newest_first_fifty_per_page_by_default(api: httpx.Client) -> None:
    api.post("/sms/bulk", json=[sms(i, f"p-{i:03d}") for i in range(100)]).raise_for_status()
    api.post("/sms/bulk", json=[sms(i, f"p-{i:03d}") for i in range(100, 120)]).raise_for_status()
    pages = [api.get("/sms", params={"page": page}).json()["entities"] for page in (1, 2, 3, 4)]
    assert [len(p) for p in pages] == [50, 50, 20, 0]
    ids = [e["clientId"] for page in pages for e in page]
    assert ids[:2] == ["p-119", "p-118"]
    assert ids[-1] == "p-000"
    assert len(set(ids)) == 120


def test_get_sms_per_page_is_capped_at_100(api: httpx.Client) -> None:
    api.post("/sms/bulk", json=[sms(i, f"c-{i}") for i in range(100)]).raise_for_status()
    api.post("/sms/bulk", json=[sms(i, f"c-{i}") for i in range(100, 105)]).raise_for_status()
    assert len(api.get("/sms", params={"per_page": 500}).json()["entities"]) == 100
    assert len(api.get("/sms", params={"per_page": 100, "page": 2}).json()["entities"]) == 5


@pytest.mark.parametrize("params", [{"page": 0}, {"page": "x"}, {"per_page": 0}, {"per_page": -3}])
def test_get_sms_with_unreadable_paging_is_400(api: httpx.Client, params: dict[str, Any]) -> None:
    assert api.get("/sms", params=params).status_code == 400


def test_get_sms_filters_by_repeated_client_id(api: httpx.Client) -> None:
    api.post("/sms/bulk", json=[sms(i, f"f-{i}") for i in range(10)]).raise_for_status()
    response = api.get("/sms", params=[("clientId", "f-2"), ("clientId", "f-7"), ("clientId", "never")])
    assert [e["clientId"] for e in response.json()["entities"]] == ["f-7", "f-2"]
    paged = api.get("/sms", params=[("clientId", "f-2"), ("clientId", "f-7"), ("per_page", 1), ("page", 2)])
    assert [e["clientId"] for e in paged.json()["entities"]] == ["f-2"]


# -- lookups ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("number", "status"), [("+34600000100", "valid"), ("+34600000113", "invalid"),
                                                ("+34600000137", "unreachable"), ("+14165550199", "valid")])
def test_a_lookup_answers_by_the_deterministic_number_rule(api: httpx.Client, number: str, status: str) -> None:
    response = api.post("/lookup", json={"to": number})
    assert response.status_code == 201
    entity = response.json()["entity"]
    assert set(entity) == {"id", "to", "status", "country", "mcc", "mnc", "network", "ported", "price",
                           "createdAt"}
    assert (entity["to"], entity["status"]) == (number, status)
    assert entity["country"] == ("CA" if number.startswith("+1") else "ES")
    assert entity["price"] == pytest.approx(LOOKUP_PRICE)
    assert isinstance(entity["ported"], bool)
    if status == "invalid":
        assert (entity["mcc"], entity["mnc"], entity["network"]) == (None, None, None)
    else:
        assert entity["mnc"] and entity["network"]


def test_a_lookup_is_charged_and_listed_newest_first(api: httpx.Client, sandbox: SandboxHandle) -> None:
    before = sandbox.stats()["balance"]
    made = [api.post("/lookup", json={"to": f"+3460000{i}100"}).json()["entity"] for i in range(3)]
    assert sandbox.stats()["balance"] == pytest.approx(before - 3 * LOOKUP_PRICE)
    assert sandbox.stats()["lookups"] == 3
    listed = api.get("/lookup").json()["entities"]
    assert [e["id"] for e in listed] == [e["id"] for e in reversed(made)]
    assert [e["id"] for e in api.get("/lookup", params={"per_page": 2, "page": 2}).json()["entities"]] == [
        made[0]["id"]]
    assert api.get(f"/lookup/{made[1]['id']}").json() == {"entity": made[1]}
    assert api.get("/lookup/unknown").status_code == 404


@pytest.mark.parametrize("body", [{"to": "666000000"}, {"to": "+80012345678"}, {}, {"to": 34600000100}])
def test_a_lookup_of_a_bad_number_is_400(api: httpx.Client, sandbox: SandboxHandle, body: dict[str, Any]) -> None:
    response = api.post("/lookup", json=body)
    assert response.status_code == 400
    assert "to" in response.json()["errors"]
    assert sandbox.stats()["lookups"] == 0


def test_a_lookup_without_funds_is_402(api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.reset(balance=0.003)
    response = api.post("/lookup", json={"to": "+34600000100"})
    assert response.status_code == 402
    assert response.json() == {"message": "Insufficient balance"}
    assert api.get("/lookup").json()["entities"] == []


# -- account and prices ---------------------------------------------------------------------------
def test_the_account_shows_the_balance_and_its_currency(api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.reset(balance=12.5, currency="USD")
    assert api.get("/organization/account").json() == {"entity": {"available": 12.5, "currency": "USD"}}


def geographic_calling_codes() -> set[str]:
    return {str(code) for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items()
            if any(r in phonenumbers.SUPPORTED_REGIONS for r in regions)}


@pytest.mark.parametrize("path", ["/sms/price-profile/me/countries", "/lookup/price-profile/me/countries"])
def test_price_profiles_cover_every_region_and_calling_code(api: httpx.Client, path: str) -> None:
    entities = api.get(path).json()["entities"]
    assert {e["country"] for e in entities} == set(phonenumbers.SUPPORTED_REGIONS)
    assert {e["prefix"] for e in entities} == geographic_calling_codes()
    for entity in entities:
        assert entity["prefix"] == str(phonenumbers.country_code_for_region(entity["country"]))
        assert entity["currency"] == "EUR"
        assert 0 < entity["price"] < 1
    by_country = {e["country"]: e for e in entities}
    assert by_country["ES"]["price"] == pytest.approx(ES_PRICE if path.startswith("/sms") else LOOKUP_PRICE)


def test_an_unpriced_country_is_missing_from_the_price_list_and_its_messages_are_rejected(
        start_own_sandbox: Any) -> None:
    own: SandboxHandle = start_own_sandbox("--unpriced", "fr", "--unpriced", "PT")
    with httpx.Client(base_url=own.url, headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"}) as client:
        countries = {e["country"] for e in client.get("/sms/price-profile/me/countries").json()["entities"]}
        assert "FR" not in countries and "PT" not in countries and "ES" in countries
        lookup_countries = {e["country"] for e in client.get("/lookup/price-profile/me/countries").json()["entities"]}
        assert {"FR", "PT"} <= lookup_countries
        body = client.post("/sms/bulk", json=[sms(1), {**sms(2), "to": "+33612345600"},
                                              {**sms(3), "to": "+351912345600"}]).json()
    assert [e["clientId"] for e in body["entities"]] == ["api-1"]
    assert {e["clientId"]: e["errors"] for e in body["errors"]} == {
        "api-2": {"to": ["no price for destination country FR"]},
        "api-3": {"to": ["no price for destination country PT"]},
    }
