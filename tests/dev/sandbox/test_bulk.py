"""``POST /sms/bulk`` over real HTTP: per-item validation, limits, balance and clientId uniqueness."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from dispatcher.instasent.segments import count_segments
from tests.helpers import SANDBOX_TOKEN, SandboxHandle

ES_PRICE, PT_PRICE, US_PRICE = 0.045, 0.040, 0.010


def sms(i: int, client_id: str | None = None, **fields: Any) -> dict[str, Any]:
    item = {"from": "Acme", "to": f"+34600{i:04d}00", "text": f"Hello {i}", "clientId": client_id or f"b-{i}"}
    item.update(fields)
    return item


def bulk(api: httpx.Client, items: list[Any]) -> dict[str, Any]:
    response = api.post("/sms/bulk", json=items)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_a_bulk_of_valid_items_is_accepted_in_order_with_full_entities(api: httpx.Client,
                                                                      sandbox: SandboxHandle) -> None:
    items = [sms(i) for i in range(5)]
    body = bulk(api, items)
    assert body["errors"] == []
    assert [e["clientId"] for e in body["entities"]] == [f"b-{i}" for i in range(5)]
    assert len({e["id"] for e in body["entities"]}) == 5
    for item, entity in zip(items, body["entities"], strict=True):
        assert (entity["to"], entity["from"], entity["text"], entity["status"]) == (
            item["to"], item["from"], item["text"], "enqueued")
    assert [m["clientId"] for m in sandbox.messages()] == [f"b-{i}" for i in range(5)]
    assert sandbox.stats()["accepted"] == 5


def test_a_bulk_with_one_bad_number_accepts_the_rest(api: httpx.Client, sandbox: SandboxHandle) -> None:
    items = [sms(0), sms(1, to="+34123"), sms(2)]
    body = bulk(api, items)
    assert [e["clientId"] for e in body["entities"]] == ["b-0", "b-2"]
    assert body["errors"] == [{"index": 1, "clientId": "b-1", "to": "+34123",
                               "errors": {"to": ["must be an E.164 number: + and 7 to 15 digits"]}}]
    stats = sandbox.stats()
    assert (stats["accepted"], stats["rejected"]) == (2, 1)


INVALID_ITEMS: dict[str, tuple[dict[str, Any], set[str]]] = {
    "no to": ({"to": None}, {"to"}),
    "to without plus": ({"to": "34600000100"}, {"to"}),
    "to starting with 0": ({"to": "+0600000100"}, {"to"}),
    "to too short": ({"to": "+346000"}, {"to"}),
    "to too long": ({"to": "+3460000010000000"}, {"to"}),
    "to with spaces": ({"to": "+34 600 000 100"}, {"to"}),
    "to a number": ({"to": 34600000100}, {"to"}),
    "to with a trailing newline": ({"to": "+34600000100\n"}, {"to"}),
    "non-geographic calling code": ({"to": "+80012345678"}, {"to"}),
    "unassigned calling code": ({"to": "+2891234567"}, {"to"}),
    "no from": ({"from": None}, {"from"}),
    "empty from": ({"from": ""}, {"from"}),
    "from of 12 characters": ({"from": "ABCDEFGHIJKL"}, {"from"}),
    "from a number": ({"from": 12345}, {"from"}),
    "no text": ({"text": None}, {"text"}),
    "empty text": ({"text": ""}, {"text"}),
    "text a list": ({"text": ["hi"]}, {"text"}),
    "clientId of 41 characters": ({"clientId": "x" * 41}, {"clientId"}),
    "empty clientId": ({"clientId": ""}, {"clientId"}),
    "clientId a number": ({"clientId": 7}, {"clientId"}),
    "unicode text without allowUnicode": ({"text": "Привет"}, {"allowUnicode"}),
    "unicode text with allowUnicode false": ({"text": "Hi 😀", "allowUnicode": False}, {"allowUnicode"}),
    "allowUnicode a string": ({"allowUnicode": "yes"}, {"allowUnicode"}),
    "every field wrong": ({"to": "x", "from": "", "text": "", "clientId": 1}, {"to", "from", "text", "clientId"}),
}


@pytest.mark.parametrize("case", list(INVALID_ITEMS))
def test_each_field_rule_rejects_only_the_bad_item_with_its_field(api: httpx.Client, case: str) -> None:
    changes, fields = INVALID_ITEMS[case]
    bad = {k: v for k, v in {**sms(1), **changes}.items() if v is not None}
    body = bulk(api, [sms(0), bad, sms(2)])
    assert [e["clientId"] for e in body["entities"]] == ["b-0", "b-2"]
    [error] = body["errors"]
    assert error["index"] == 1
    assert error["clientId"] == bad.get("clientId")
    assert error["to"] == bad.get("to")
    assert set(error["errors"]) == fields
    assert all(isinstance(m, str) and m for messages in error["errors"].values() for m in messages)


def test_an_item_that_is_not_an_object_is_rejected_on_its_own(api: httpx.Client) -> None:
    body = bulk(api, ["hello", sms(1)])
    assert body["errors"] == [{"index": 0, "clientId": None, "to": None, "errors": {"item": ["must be a JSON object"]}}]
    assert len(body["entities"]) == 1


VALID_EDGES: dict[str, dict[str, Any]] = {
    "from of 11 characters": {"from": "ABCDEFGHIJK"},
    "clientId of 40 characters": {"clientId": "x" * 40},
    "no clientId": {"clientId": None},
    "to of 15 digits": {"to": "+346000001000000"},
    "to of 7 digits": {"to": "+3460001"},
    "gsm text with allowUnicode": {"allowUnicode": True},
    "unicode text with allowUnicode": {"text": "Привет 😀", "allowUnicode": True},
    "extension characters without allowUnicode": {"text": "Total: 5€ [ok]"},
    "a canadian number": {"to": "+14165550100"},
}


@pytest.mark.parametrize("case", list(VALID_EDGES))
def test_items_at_the_edges_of_the_rules_are_accepted(api: httpx.Client, case: str) -> None:
    item = {k: v for k, v in {**sms(1), **VALID_EDGES[case]}.items() if v is not None}
    body = bulk(api, [item])
    assert body["errors"] == []
    [entity] = body["entities"]
    assert entity["clientId"] == item.get("clientId")
    assert entity["encoding"] == count_segments(item["text"]).encoding


def test_malformed_json_is_400_problems_parsing_json(api: httpx.Client, sandbox: SandboxHandle) -> None:
    response = api.post("/sms/bulk", content=b'[{"to": "+34600000100",', headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"message": "Problems parsing JSON"}
    assert sandbox.messages() == []


@pytest.mark.parametrize("body", [{"to": "+34600000100"}, "text", 5, None, []])
def test_a_body_that_is_not_a_non_empty_array_is_400(api: httpx.Client, sandbox: SandboxHandle, body: Any) -> None:
    response = api.post("/sms/bulk", json=body)
    assert response.status_code == 400
    assert response.json()["message"]
    assert sandbox.messages() == []


def test_more_than_100_items_is_413_and_nothing_is_accepted(api: httpx.Client, sandbox: SandboxHandle) -> None:
    response = api.post("/sms/bulk", json=[sms(i) for i in range(101)])
    assert response.status_code == 413
    assert "100" in response.json()["message"]
    assert sandbox.messages() == []
    assert len(bulk(api, [sms(i) for i in range(100)])["entities"]) == 100


def test_the_balance_goes_down_by_parts_times_the_country_price(api: httpx.Client, sandbox: SandboxHandle) -> None:
    start = sandbox.stats()["balance"]
    texts = {"one part": "Hi", "two gsm parts": "a" * 161, "three utf16 parts": "Привет " * 21}
    items = [sms(i, f"price-{i}", text=text, allowUnicode=True) for i, text in enumerate(texts.values())]
    items += [sms(10, "pt", to="+351912345600", text="a" * 161), sms(11, "us", to="+12125550100")]
    body = bulk(api, items)
    assert body["errors"] == []
    parts = [count_segments(item["text"]).parts for item in items]
    assert parts == [1, 2, 3, 2, 1]
    prices = [p * ES_PRICE for p in parts[:3]] + [2 * PT_PRICE, US_PRICE]
    assert [e["price"] for e in body["entities"]] == pytest.approx(prices)
    assert [e["parts"] for e in body["entities"]] == parts
    assert sandbox.stats()["balance"] == pytest.approx(start - sum(prices))
    assert api.get("/organization/account").json()["entity"]["available"] == pytest.approx(start - sum(prices))


def test_a_bulk_costing_more_than_the_balance_is_402_and_nothing_is_accepted(
        api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.reset(balance=2 * ES_PRICE)
    response = api.post("/sms/bulk", json=[sms(i) for i in range(3)])
    assert response.status_code == 402
    assert response.json() == {"message": "Insufficient balance"}
    assert sandbox.messages() == []
    assert sandbox.stats()["balance"] == pytest.approx(2 * ES_PRICE)
    exact = bulk(api, [sms(i) for i in range(2)] + [sms(5, to="+34123")])  # invalid items cost nothing
    assert len(exact["entities"]) == 2
    assert sandbox.stats()["balance"] == pytest.approx(0)
    assert api.post("/sms/bulk", json=[sms(9)]).status_code == 402


def test_a_client_id_reused_in_a_later_request_is_rejected_as_already_used(
        api: httpx.Client, sandbox: SandboxHandle) -> None:
    bulk(api, [sms(0, "once"), sms(1, "other")])
    body = bulk(api, [sms(0, "once"), sms(2, "fresh")])
    assert [e["clientId"] for e in body["entities"]] == ["fresh"]
    assert body["errors"] == [{"index": 0, "clientId": "once", "to": sms(0)["to"],
                               "errors": {"clientId": ["already used"]}}]
    counts = {m["clientId"]: (m["submissions"], m["accepted"]) for m in sandbox.messages()}
    assert counts == {"once": (2, 1), "other": (1, 1), "fresh": (1, 1)}
    stats = sandbox.stats()
    assert (stats["accepted"], stats["rejected"], stats["duplicate_submissions"]) == (3, 1, 1)


def test_a_client_id_repeated_within_one_batch_is_rejected_as_already_used(
        api: httpx.Client, sandbox: SandboxHandle) -> None:
    body = bulk(api, [sms(0, "twin"), sms(1, "twin"), sms(2, "solo")])
    assert [e["clientId"] for e in body["entities"]] == ["twin", "solo"]
    assert [(e["index"], e["errors"]) for e in body["errors"]] == [(1, {"clientId": ["already used"]})]
    assert {m["clientId"]: (m["submissions"], m["accepted"]) for m in sandbox.messages()} == {
        "twin": (2, 1), "solo": (1, 1)}


def test_an_invalid_item_does_not_reserve_its_client_id(api: httpx.Client) -> None:
    body = bulk(api, [sms(0, "later", text=""), sms(1, "later")])
    assert [e["clientId"] for e in body["entities"]] == ["later"]
    assert set(body["errors"][0]["errors"]) == {"text"}


def test_a_refused_bulk_still_counts_its_submissions(api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.reset(balance=ES_PRICE)
    assert api.post("/sms/bulk", json=[sms(0, "poor"), sms(1, "poorer")]).status_code == 402
    bulk(api, [sms(0, "poor")])
    assert [(m["clientId"], m["submissions"], m["accepted"]) for m in sandbox.messages()] == [("poor", 2, 1)]


def test_without_enforcement_a_reused_client_id_is_accepted_again(
        start_own_sandbox: Callable[..., SandboxHandle]) -> None:
    own = start_own_sandbox("--rate-limit", "0", "--no-enforce-unique-client-id")
    with httpx.Client(base_url=own.url, headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"}) as client:
        first = bulk(client, [sms(0, "again"), sms(1, "again")])
        second = bulk(client, [sms(0, "again")])
    assert first["errors"] == second["errors"] == []
    messages = own.messages()
    assert [m["clientId"] for m in messages] == ["again"] * 3
    assert len({m["id"] for m in messages}) == 3
    assert all((m["submissions"], m["accepted"]) == (3, 3) for m in messages)
    stats = own.stats()
    assert (stats["accepted"], stats["duplicate_submissions"], stats["duplicate_accepted"]) == (3, 2, 2)


def test_uniqueness_can_be_switched_off_by_a_reset(api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.reset(enforce_unique_client_id=False)
    bulk(api, [sms(0, "x")])
    assert bulk(api, [sms(0, "x")])["errors"] == []
    sandbox.reset()
    bulk(api, [sms(0, "x")])
    assert bulk(api, [sms(0, "x")])["errors"][0]["errors"] == {"clientId": ["already used"]}
