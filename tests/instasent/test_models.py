"""Wire shapes: tolerant parsing of Instasent's answers and exact spelling of what we send."""

from __future__ import annotations

import dataclasses

import pytest

from dispatcher.instasent.models import BulkResult, Lookup, RejectedItem, Sms, SmsItem


def test_an_sms_item_is_sent_with_the_api_spelling_of_every_field() -> None:
    item = SmsItem(sender="Acme", to="+34600000001", text="hola", client_id="c1-0001")
    assert item.to_wire() == {"from": "Acme", "to": "+34600000001", "text": "hola", "clientId": "c1-0001"}


def test_allow_unicode_is_sent_only_when_true() -> None:
    plain = SmsItem(sender="Acme", to="+34600000001", text="hola", client_id="c1", allow_unicode=False)
    unicode = SmsItem(sender="Acme", to="+34600000001", text="привет", client_id="c2", allow_unicode=True)
    assert "allowUnicode" not in plain.to_wire()
    assert unicode.to_wire()["allowUnicode"] is True
    assert set(unicode.to_wire()) == {"from", "to", "text", "clientId", "allowUnicode"}


def test_an_sms_item_is_immutable() -> None:
    item = SmsItem(sender="Acme", to="+34600000001", text="hola", client_id="c1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.text = "changed"  # type: ignore[misc]


def test_an_sms_entity_is_parsed_with_every_documented_field() -> None:
    sms = Sms.from_wire({
        "id": "sms_1", "clientId": "c1", "from": "Acme", "to": "+34600000001", "text": "hola",
        "status": "enqueued", "encoding": "GSM_7BIT", "parts": 2, "price": 0.09, "createdAt": "2026-04-21T10:15:00Z",
    })
    assert sms == Sms(id="sms_1", client_id="c1", to="+34600000001", status="enqueued", text="hola", sender="Acme",
                      encoding="GSM_7BIT", parts=2, price=0.09, created_at="2026-04-21T10:15:00Z")


def test_an_sms_entity_ignores_unknown_fields_and_defaults_missing_ones() -> None:
    sms = Sms.from_wire({"id": "sms_2", "status": "enqueued", "someFutureField": {"x": 1}, "userId": 7})
    assert sms.id == "sms_2"
    assert sms.status == "enqueued"
    assert sms.client_id is None
    assert (sms.to, sms.text, sms.sender, sms.encoding, sms.created_at) == ("", "", "", "", "")
    assert (sms.parts, sms.price) == (1, 0.0)
    assert Sms.from_wire({}).id == ""


def test_null_fields_in_an_sms_entity_read_as_missing_not_as_the_word_none() -> None:
    sms = Sms.from_wire({"id": "sms_3", "clientId": None, "to": None, "text": None, "from": None, "status": None,
                         "encoding": None, "parts": None, "price": None, "createdAt": None})
    assert sms.client_id is None
    assert (sms.to, sms.text, sms.sender, sms.status, sms.encoding, sms.created_at) == ("", "", "", "", "", "")
    assert (sms.parts, sms.price) == (1, 0.0)


def test_numbers_sent_as_strings_are_read_and_unreadable_ones_fall_back_to_defaults() -> None:
    assert Sms.from_wire({"id": 12, "parts": "3", "price": "0.045"}) == Sms(
        id="12", client_id=None, to="", status="", parts=3, price=0.045)
    odd = Sms.from_wire({"id": "x", "parts": "many", "price": "n/a"})
    assert (odd.parts, odd.price) == (1, 0.0)


def test_a_client_id_that_is_not_a_string_is_read_as_one() -> None:
    assert Sms.from_wire({"id": "x", "clientId": 42}).client_id == "42"


def test_a_lookup_entity_is_parsed_tolerantly() -> None:
    full = Lookup.from_wire({
        "id": "lk_1", "to": "+34600000001", "status": "valid", "country": "ES", "mcc": "214", "mnc": "07",
        "network": "Movistar", "ported": True, "price": 0.005, "createdAt": "2026-04-21T10:15:00Z", "extra": [1],
    })
    assert full == Lookup(id="lk_1", to="+34600000001", status="valid", country="ES", mcc="214", mnc="07",
                          network="Movistar", ported=True, price=0.005, created_at="2026-04-21T10:15:00Z")
    sparse = Lookup.from_wire({"id": "lk_2", "status": "invalid", "mcc": None, "network": None, "ported": None})
    assert (sparse.id, sparse.status, sparse.to, sparse.country, sparse.mcc, sparse.network) == (
        "lk_2", "invalid", "", "", "", "")
    assert sparse.ported is False and sparse.price == 0.0
    nulls = Lookup.from_wire({"id": "lk_3", "to": None, "status": None, "createdAt": None, "price": "x"})
    assert (nulls.to, nulls.status, nulls.created_at, nulls.price) == ("", "", "", 0.0)


def test_a_ported_flag_sent_as_the_string_false_is_false() -> None:
    assert Lookup.from_wire({"id": "lk", "ported": "false"}).ported is False
    assert Lookup.from_wire({"id": "lk", "ported": "true"}).ported is True
    assert Lookup.from_wire({"id": "lk", "ported": 0}).ported is False


def test_a_rejected_item_reads_as_one_line_of_field_errors() -> None:
    item = RejectedItem(client_id="c1", to="+1", errors={"to": ["invalid number"], "text": ["empty", "too long"]})
    assert item.reason == "text: empty, too long; to: invalid number"
    assert RejectedItem(client_id="c1", to="", errors={}).reason == "rejected"


@pytest.mark.parametrize(
    ("errors", "already_used"),
    [
        ({"clientId": ["already used"]}, True),
        ({"clientId": ["Already used by sms_123"]}, True),
        ({"clientId": ["too long"]}, False),
        ({"clientId": ["already used"], "to": ["invalid number"]}, False),
        ({"to": ["already used"]}, False),
        ({}, False),
    ],
)
def test_already_used_is_true_only_when_a_reused_client_id_is_the_only_complaint(
        errors: dict[str, list[str]], already_used: bool) -> None:
    assert RejectedItem(client_id="c1", to="+34600000001", errors=errors).already_used is already_used


def test_a_bulk_result_starts_empty_and_owns_its_containers() -> None:
    a, b = BulkResult(), BulkResult()
    a.accepted["x"] = Sms.from_wire({"id": "1", "clientId": "x"})
    a.unmatched.append({})
    assert (b.accepted, b.rejected, b.unmatched) == ({}, {}, [])


def test_the_lean_bulk_answer_matches_the_same_items_as_the_full_one() -> None:
    from dispatcher.instasent import wire

    items = [SmsItem(sender="Acme", to=f"+3460000000{i}", text="hola", client_id=f"c-0-{i}") for i in range(4)]
    body = {"entities": [{"id": "s0", "clientId": "c-0-0", "to": "+34600000000", "status": "enqueued"},
                         {"id": "s9", "clientId": "someone-else"}, "junk", {"id": 7, "clientId": "c-0-3"}],
            "errors": [{"clientId": "c-0-1", "errors": {"to": ["invalid"]}},
                       {"index": 2, "errors": {"text": ["empty"]}}, {"clientId": "c-0-0", "errors": {"x": ["y"]}}]}
    full = wire.match_bulk(body, items)
    lean = wire.bulk_ids(body, [item.client_id for item in items])
    assert lean.accepted == {cid: sms.id for cid, sms in full.accepted.items()} == {"c-0-0": "s0", "c-0-3": "7"}
    assert lean.rejected == full.rejected and set(lean.rejected) == {"c-0-1", "c-0-2"}
    assert lean.unmatched == full.unmatched and len(lean.unmatched) == 3


def test_bulk_items_built_from_columns_are_spelled_like_sms_items() -> None:
    from dispatcher.sending.payload import BatchMessages

    messages = BatchMessages(row=[2, 3], to=["+34600000001", "+34600000002"], text=["a", "b"],
                             sender=["Acme", "Acme"], parts=[1, 1], unicode=[False, True], price=[0.0, 0.0],
                             country=["ES", "ES"], batch=7)
    assert messages.wire_items("cmp", [1, 0]) == [messages.item("cmp", 1).to_wire(), messages.item("cmp", 0).to_wire()]
