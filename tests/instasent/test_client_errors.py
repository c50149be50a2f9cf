"""The client's error mapping, bulk matching and request hygiene, against ``httpx.MockTransport``.

Every httpx error and HTTP status becomes exactly one of the project's errors, and whether the
request may have been processed (``maybe_processed``) is never guessed wrong in the unsafe way.
"""

from __future__ import annotations

import logging
import random
import traceback
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from dispatcher.errors import (
    AuthenticationFailed,
    ConfigurationError,
    ConnectionFailed,
    DispatcherError,
    InsufficientFunds,
    NotFound,
    OutcomeUnknown,
    PayloadTooLarge,
    PermanentError,
    RateLimited,
    RequestRejected,
    RetryableError,
)
from dispatcher.instasent.client import MAX_BULK_ITEMS, InstasentClient
from dispatcher.instasent.models import RateLimitInfo, SmsItem
from dispatcher.instasent.translate import parse_rate_limit
from dispatcher.settings import Secret, Settings

#: Distinctive enough that finding any piece of it in a message means the token leaked.
TOKEN = "tok-QX7zv-LEAKCANARY-93kd1"
BASE_URL = "https://api.instasent.test/transactional/v1"
RATE_HEADERS = {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "59", "X-RateLimit-Reset": "1900000000"}

Handler = Callable[[httpx.Request], httpx.Response]


def make_client(handler: Handler, token: str = TOKEN) -> InstasentClient:
    return InstasentClient(token=token, base_url=BASE_URL, transport=httpx.MockTransport(handler))


def items(n: int, prefix: str = "cmp1") -> list[SmsItem]:
    return [SmsItem(sender="Acme", to=f"+3460000{i:04d}", text=f"hello {i}", client_id=f"{prefix}-{i:04d}")
            for i in range(n)]


def respond(status: int, body: Any = None, headers: dict[str, str] | None = None,
            content: bytes | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if content is not None:
            return httpx.Response(status, content=content, headers=headers)
        if body is None:
            return httpx.Response(status, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return handler


def raising(exc_type: type[httpx.TransportError], message: str = "boom") -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type(message, request=request)

    return handler


def entity(item: SmsItem, sms_id: str) -> dict[str, Any]:
    return {"id": sms_id, "clientId": item.client_id, "from": item.sender, "to": item.to, "text": item.text,
            "status": "enqueued", "encoding": "GSM_7BIT", "parts": 1, "price": 0.045,
            "createdAt": "2026-04-21T10:15:00Z"}


CALLS: dict[str, Callable[[InstasentClient], object]] = {
    "send_bulk": lambda c: c.send_bulk(items(3)),
    "send": lambda c: c.send(items(1)[0]),
    "get_sms": lambda c: c.get_sms("sms_1"),
    "lookup": lambda c: c.lookup("+34600000001"),
    "account": lambda c: c.account(),
}


def assert_no_token(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text
        assert "LEAKCANARY" not in text


def full_traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


# -- transport errors ---------------------------------------------------------------------------
@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
@pytest.mark.parametrize("exc_type", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError])
def test_a_connection_that_cannot_be_made_means_nothing_was_sent(
        exc_type: type[httpx.TransportError], call: Callable[[InstasentClient], object]) -> None:
    with pytest.raises(ConnectionFailed) as info:
        call(make_client(raising(exc_type)))
    assert info.value.maybe_processed is False
    assert isinstance(info.value, RetryableError)
    assert isinstance(info.value.__cause__, exc_type)
    assert exc_type.__name__ in str(info.value)


@pytest.mark.parametrize("exc_type", [httpx.WriteError, httpx.WriteTimeout])
def test_a_failed_write_means_the_bulk_was_not_processed(exc_type: type[httpx.TransportError]) -> None:
    with pytest.raises(ConnectionFailed) as info:
        make_client(raising(exc_type)).send_bulk(items(5))
    assert info.value.maybe_processed is False
    assert isinstance(info.value, RetryableError)


@pytest.mark.parametrize("exc_type", [httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError])
def test_a_read_timeout_or_dropped_answer_means_the_bulk_may_have_been_processed(
        exc_type: type[httpx.TransportError]) -> None:
    with pytest.raises(OutcomeUnknown) as info:
        make_client(raising(exc_type)).send_bulk(items(5))
    assert info.value.maybe_processed is True
    assert info.value.status is None
    assert isinstance(info.value, RetryableError)
    assert "may have been processed" in str(info.value)


def test_an_unusable_base_url_scheme_is_a_configuration_error() -> None:
    client = InstasentClient(token=TOKEN, base_url="ftp://api.instasent.test")
    with pytest.raises(ConfigurationError, match="INSTASENT_BASE_URL") as info:
        client.account()
    assert not isinstance(info.value, AuthenticationFailed)
    assert info.value.maybe_processed is False
    client.close()


def test_a_local_protocol_error_quoting_the_header_does_not_leak_the_token() -> None:
    handler = raising(httpx.LocalProtocolError, f"Illegal header value b'Bearer {TOKEN}\\n'")
    with pytest.raises(ConfigurationError) as info:
        make_client(handler).send_bulk(items(1))
    assert_no_token(str(info.value), repr(info.value), full_traceback(info.value))


# -- HTTP statuses ------------------------------------------------------------------------------
def test_a_429_is_rate_limited_with_the_reset_time_and_was_not_processed() -> None:
    with pytest.raises(RateLimited) as info:
        make_client(respond(429, headers={**RATE_HEADERS, "X-RateLimit-Remaining": "0"})).send_bulk(items(2))
    assert info.value.reset_at == 1900000000.0
    assert info.value.maybe_processed is False
    assert isinstance(info.value, RetryableError)
    assert "POST /sms/bulk" in str(info.value)


def test_a_429_without_rate_limit_headers_has_no_reset_time() -> None:
    with pytest.raises(RateLimited) as info:
        make_client(respond(429)).send_bulk(items(2))
    assert info.value.reset_at is None


def test_a_429_with_only_the_reset_header_still_says_when_to_retry() -> None:
    with pytest.raises(RateLimited) as info:
        make_client(respond(429, headers={"X-RateLimit-Reset": "1900000123"})).account()
    assert info.value.reset_at == 1900000123.0


@pytest.mark.parametrize("reset", ["soon", "inf", "nan", "-inf", "1e30", ""])
def test_a_429_with_an_unreadable_reset_header_is_still_rate_limited(reset: str) -> None:
    with pytest.raises(RateLimited) as info:
        make_client(respond(429, headers={**RATE_HEADERS, "X-RateLimit-Reset": reset})).send_bulk(items(1))
    assert info.value.reset_at is None


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_is_an_authentication_failure_and_a_configuration_error(status: int) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        make_client(respond(status, {"message": "Unauthorized"})).send_bulk(items(1))
    assert isinstance(info.value, ConfigurationError)
    assert isinstance(info.value, PermanentError)
    assert info.value.exit_code == 2
    assert "INSTASENT_TOKEN" in str(info.value)
    assert_no_token(str(info.value), repr(info.value))


def test_a_402_means_insufficient_funds_with_the_servers_message() -> None:
    with pytest.raises(InsufficientFunds, match="Insufficient balance") as info:
        make_client(respond(402, {"message": "Insufficient balance"})).send_bulk(items(1))
    assert isinstance(info.value, PermanentError)
    assert info.value.maybe_processed is False


def test_a_404_is_not_found_and_a_rejected_request() -> None:
    with pytest.raises(NotFound) as info:
        make_client(respond(404, {"message": "Not found"})).get_sms("sms_missing")
    assert isinstance(info.value, RequestRejected)
    assert info.value.status == 404
    assert "GET /sms/{id}" in str(info.value)


def test_a_413_is_payload_too_large() -> None:
    with pytest.raises(PayloadTooLarge, match="too many items") as info:
        make_client(respond(413, {"message": "too many items"})).send_bulk(items(1))
    assert isinstance(info.value, RequestRejected)
    assert info.value.status == 413


@pytest.mark.parametrize("status", [400, 422])
def test_a_malformed_request_is_rejected_with_the_bodys_message(status: int) -> None:
    with pytest.raises(RequestRejected, match="Problems parsing JSON") as info:
        make_client(respond(status, {"message": "Problems parsing JSON"})).send_bulk(items(1))
    assert type(info.value) is RequestRejected
    assert info.value.status == status
    assert isinstance(info.value, PermanentError)
    assert info.value.maybe_processed is False


def test_a_rejection_without_a_json_body_is_still_a_rejection() -> None:
    with pytest.raises(RequestRejected) as info:
        make_client(respond(400, content=b"<html>bad</html>")).send_bulk(items(1))
    assert info.value.status == 400
    assert "<html>" not in str(info.value)


def test_a_very_long_error_message_is_shortened() -> None:
    with pytest.raises(RequestRejected) as info:
        make_client(respond(400, {"message": "x" * 5000})).send_bulk(items(1))
    assert len(str(info.value)) < 400


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_server_error_means_the_bulk_may_have_been_processed(status: int) -> None:
    with pytest.raises(OutcomeUnknown) as info:
        make_client(respond(status, {"message": "oops"})).send_bulk(items(3))
    assert info.value.status == status
    assert info.value.maybe_processed is True
    assert isinstance(info.value, RetryableError)


def test_a_408_means_nothing_was_processed() -> None:
    with pytest.raises(ConnectionFailed) as info:
        make_client(respond(408)).send_bulk(items(1))
    assert info.value.maybe_processed is False


def test_a_201_whose_body_is_not_json_means_the_bulk_may_have_been_processed() -> None:
    with pytest.raises(OutcomeUnknown) as info:
        make_client(respond(201, content=b"<html>Created</html>")).send_bulk(items(3))
    assert info.value.status == 201
    assert info.value.maybe_processed is True


def test_a_bulk_answer_that_is_not_an_object_means_the_bulk_may_have_been_processed() -> None:
    with pytest.raises(OutcomeUnknown):
        make_client(respond(201, [1, 2, 3])).send_bulk(items(3))


def test_an_answer_without_an_entity_is_an_unknown_outcome() -> None:
    with pytest.raises(OutcomeUnknown):
        make_client(respond(201, {"something": "else"})).send(items(1)[0])
    with pytest.raises(OutcomeUnknown):
        make_client(respond(201)).send(items(1)[0])


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_configuration_error_and_is_not_followed(status: int) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, headers={"Location": "https://elsewhere.test/sms/bulk"})

    with pytest.raises(ConfigurationError, match="INSTASENT_BASE_URL") as info:
        make_client(handler).send_bulk(items(1))
    assert not isinstance(info.value, AuthenticationFailed)
    assert len(calls) == 1


ERROR_CASES: dict[str, tuple[Handler, type[DispatcherError]]] = {
    "connect": (raising(httpx.ConnectError), ConnectionFailed),
    "write": (raising(httpx.WriteTimeout), ConnectionFailed),
    "read": (raising(httpx.ReadTimeout), OutcomeUnknown),
    "429": (respond(429, headers=RATE_HEADERS), RateLimited),
    "401": (respond(401, {"message": "Unauthorized"}), AuthenticationFailed),
    "402": (respond(402, {"message": "Insufficient balance"}), InsufficientFunds),
    "404": (respond(404), NotFound),
    "413": (respond(413, {"message": "too large"}), PayloadTooLarge),
    "422": (respond(422, {"message": "bad"}), RequestRejected),
    "500": (respond(500), OutcomeUnknown),
    "201-not-json": (respond(201, content=b"nope"), OutcomeUnknown),
    "302": (respond(302, headers={"Location": "/x"}), ConfigurationError),
}
RETRYABLE = {ConnectionFailed, OutcomeUnknown, RateLimited}
MAYBE_PROCESSED = {OutcomeUnknown}


@pytest.mark.parametrize(("handler", "expected"), ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_every_error_is_either_retryable_or_permanent_and_says_if_it_may_have_been_processed(
        handler: Handler, expected: type[DispatcherError]) -> None:
    client = make_client(handler)
    with pytest.raises(expected) as info:
        client.send_bulk(items(2))
    exc = info.value
    assert isinstance(exc, RetryableError) is (expected in RETRYABLE)
    assert isinstance(exc, PermanentError) is (expected not in RETRYABLE)
    assert exc.maybe_processed is (expected in MAYBE_PROCESSED)
    assert_no_token(str(exc), repr(exc), full_traceback(exc), repr(client))


# -- the token never leaks ----------------------------------------------------------------------
def test_the_token_never_appears_in_logs_even_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "dispatcher", "dispatcher.instasent.client"):
        caplog.set_level(logging.DEBUG, logger=name)

    def ok(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"entity": {"available": 10.0, "currency": "EUR"}}, headers=RATE_HEADERS)

    make_client(ok).account()
    for handler, expected in ERROR_CASES.values():
        with pytest.raises(expected):
            make_client(handler).send_bulk(items(2))
    assert caplog.records, "expected httpx or the client to log something at DEBUG"
    for record in caplog.records:
        assert_no_token(record.getMessage(), repr(record.args), record.exc_text or "")
    assert_no_token(caplog.text)


def test_the_token_is_not_in_the_client_repr_nor_the_url() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"entity": {"available": 1, "currency": "EUR"}})

    client = make_client(handler)
    client.account()
    assert_no_token(repr(client), str(client), str(seen[0].url))
    assert "access_token" not in str(seen[0].url)


def test_a_secret_token_object_is_accepted_as_well_as_a_string() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"entity": {"available": 1, "currency": "EUR"}})

    InstasentClient(token=Secret(TOKEN), base_url=BASE_URL, transport=httpx.MockTransport(handler)).account()
    assert seen[0].headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("token", ["", Secret("")])
def test_a_client_without_a_token_is_a_configuration_error_naming_instasent_token(token: str | Secret) -> None:
    with pytest.raises(ConfigurationError, match="INSTASENT_TOKEN"):
        InstasentClient(token=token, base_url=BASE_URL)


@pytest.mark.parametrize("bad", [f"{TOKEN} x", f"{TOKEN}\n", f"{TOKEN}\x00", f"{TOKEN}é", f"\t{TOKEN}"])
def test_a_token_with_characters_no_token_has_is_refused_without_quoting_it(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="INSTASENT_TOKEN") as info:
        InstasentClient(token=bad, base_url=BASE_URL)
    assert_no_token(str(info.value), repr(info.value), full_traceback(info.value))


def test_from_settings_without_a_token_names_instasent_token() -> None:
    with pytest.raises(ConfigurationError, match="INSTASENT_TOKEN"):
        InstasentClient.from_settings(Settings.from_env(environ={}, env_file=None))


# -- requests -----------------------------------------------------------------------------------
def test_every_request_carries_the_bearer_token_and_json_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            sent = orjson.loads(request.content)
            return httpx.Response(201, json={"entities": [entity(SmsItem(**_from_wire(e)), f"id{i}")
                                                          for i, e in enumerate(sent)], "errors": []})
        return httpx.Response(200, json={"entity": {"id": "sms_1", "status": "enqueued"}})

    client = make_client(handler)
    client.send_bulk(items(2))
    client.get_sms("sms_1")
    assert len(seen) == 2
    for request in seen:
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert request.headers["Accept"] == "application/json"
        assert request.headers["Content-Type"] == "application/json"
    assert str(seen[0].url) == f"{BASE_URL}/sms/bulk"
    assert seen[1].url.path == "/transactional/v1/sms/sms_1"


def _from_wire(body: dict[str, Any]) -> dict[str, Any]:
    return {"sender": body["from"], "to": body["to"], "text": body["text"], "client_id": body["clientId"],
            "allow_unicode": body.get("allowUnicode", False)}


def test_the_bulk_body_is_a_json_array_in_the_apis_spelling() -> None:
    sent: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(orjson.loads(request.content))
        return httpx.Response(201, json={"entities": [], "errors": []})

    batch = [*items(1), SmsItem(sender="Acme", to="+34600000099", text="привет", client_id="u-1", allow_unicode=True)]
    make_client(handler).send_bulk(batch)
    assert sent == [[
        {"from": "Acme", "to": "+34600000000", "text": "hello 0", "clientId": "cmp1-0000"},
        {"from": "Acme", "to": "+34600000099", "text": "привет", "clientId": "u-1", "allowUnicode": True},
    ]]


def test_timeouts_are_always_set() -> None:
    client = make_client(respond(200))
    timeout = client._http.timeout
    assert None not in (timeout.connect, timeout.read, timeout.write, timeout.pool)
    assert timeout.connect == 5.0 and timeout.read == 30.0


def test_from_settings_takes_its_timeouts_and_base_url_from_the_settings() -> None:
    settings = Settings().with_overrides(instasent_token=TOKEN, instasent_base_url=BASE_URL + "/",
                                         connect_timeout_s=1.5, read_timeout_s=7.0, write_timeout_s=3.0)
    client = InstasentClient.from_settings(settings, transport=httpx.MockTransport(respond(200)))
    timeout = client._http.timeout
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (1.5, 7.0, 3.0, 1.5)
    assert client.base_url == BASE_URL
    assert_no_token(repr(client))
    client.close()


@pytest.mark.parametrize("bad_id", ["", "a/b", "a?b", "a#b", ".", ".."])
def test_an_id_that_would_change_the_path_is_refused(bad_id: str) -> None:
    client = make_client(respond(200, {"entity": {"id": "x"}}))
    with pytest.raises(ValueError):
        client.get_sms(bad_id)
    with pytest.raises(ValueError):
        client.get_lookup(bad_id)


# -- send_bulk input checks ---------------------------------------------------------------------
@pytest.mark.parametrize("batch", [[], items(MAX_BULK_ITEMS + 1), [*items(2), items(1)[0]],
                                   [SmsItem(sender="A", to="+34600000001", text="t", client_id="")]],
                         ids=["empty", "101", "duplicate-client-id", "empty-client-id"])
def test_send_bulk_refuses_a_batch_it_cannot_match_back_without_sending_anything(batch: list[SmsItem]) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(201, json={"entities": [], "errors": []})

    with pytest.raises(ValueError):
        make_client(handler).send_bulk(batch)
    assert calls == []


def test_send_bulk_takes_exactly_one_hundred_items() -> None:
    batch = items(MAX_BULK_ITEMS)
    body = {"entities": [entity(item, f"sms_{i}") for i, item in enumerate(batch)], "errors": []}
    result = make_client(respond(201, body)).send_bulk(batch)
    assert len(result.accepted) == MAX_BULK_ITEMS


# -- bulk matching ------------------------------------------------------------------------------
def test_accepted_messages_are_matched_by_client_id_even_when_the_answer_is_shuffled() -> None:
    batch = items(20)
    entities = [entity(item, f"sms_{item.client_id}") for item in batch]
    random.shuffle(entities)
    result = make_client(respond(201, {"entities": entities, "errors": []})).send_bulk(batch)
    assert set(result.accepted) == {item.client_id for item in batch}
    for cid, sms in result.accepted.items():
        assert sms.id == f"sms_{cid}"
        assert sms.client_id == cid
    assert result.rejected == {} and result.unmatched == []


def test_rejected_items_are_matched_by_client_id_with_their_field_errors() -> None:
    batch = items(4)
    body = {
        "entities": [entity(batch[0], "sms_a"), entity(batch[2], "sms_c")],
        "errors": [
            {"index": 0, "clientId": batch[3].client_id, "to": batch[3].to, "errors": {"text": ["empty"]}},
            {"index": 3, "clientId": batch[1].client_id, "to": batch[1].to,
             "errors": {"to": ["invalid number"], "from": ["too long"]}},
        ],
    }
    result = make_client(respond(201, body)).send_bulk(batch)
    assert set(result.accepted) == {batch[0].client_id, batch[2].client_id}
    assert set(result.rejected) == {batch[1].client_id, batch[3].client_id}
    # The clientId wins over a contradicting index.
    assert result.rejected[batch[3].client_id].errors == {"text": ["empty"]}
    assert result.rejected[batch[1].client_id].errors == {"to": ["invalid number"], "from": ["too long"]}
    assert result.rejected[batch[1].client_id].reason == "from: too long; to: invalid number"
    assert result.rejected[batch[1].client_id].to == batch[1].to
    assert result.unmatched == []


def test_a_rejected_item_without_a_client_id_is_matched_by_its_index() -> None:
    batch = items(3)
    body = {"entities": [entity(batch[0], "sms_a")],
            "errors": [{"index": 2, "to": batch[2].to, "errors": {"to": ["invalid"]}},
                       {"index": 1, "clientId": None, "errors": {"text": ["empty"]}}]}
    result = make_client(respond(201, body)).send_bulk(batch)
    assert set(result.rejected) == {batch[1].client_id, batch[2].client_id}
    assert result.rejected[batch[2].client_id].client_id == batch[2].client_id
    assert result.rejected[batch[2].client_id].index == 2
    assert result.unmatched == []


def test_entries_that_match_no_input_go_to_unmatched() -> None:
    batch = items(3)
    stranger_entity = {"id": "sms_x", "clientId": "someone-else", "status": "enqueued"}
    body = {
        "entities": [entity(batch[0], "sms_a"), stranger_entity, "garbage", {"id": "sms_y"}],
        "errors": [
            {"index": 1, "clientId": "someone-else-too", "errors": {"to": ["invalid"]}},  # unknown id: not by index
            {"index": 99, "errors": {"to": ["invalid"]}},
            {"errors": {"to": ["invalid"]}},
            "not an object",
        ],
    }
    result = make_client(respond(201, body)).send_bulk(batch)
    assert set(result.accepted) == {batch[0].client_id}
    assert result.rejected == {}
    assert stranger_entity in result.unmatched
    assert {"value": "garbage"} in result.unmatched
    assert {"id": "sms_y"} in result.unmatched
    assert len(result.unmatched) == 6


def test_an_error_pointing_by_index_at_an_accepted_item_does_not_reject_it() -> None:
    batch = items(2)
    body = {"entities": [entity(batch[0], "sms_a")], "errors": [{"index": 0, "errors": {"to": ["invalid"]}}]}
    result = make_client(respond(201, body)).send_bulk(batch)
    assert set(result.accepted) == {batch[0].client_id}
    assert result.rejected == {}
    assert len(result.unmatched) == 1


def test_items_the_answer_does_not_mention_are_neither_accepted_nor_rejected() -> None:
    batch = items(3)
    result = make_client(respond(201, {"entities": [entity(batch[0], "sms_a")]})).send_bulk(batch)
    assert set(result.accepted) == {batch[0].client_id}
    assert result.rejected == {}
    empty = make_client(respond(201)).send_bulk(batch)
    assert (empty.accepted, empty.rejected, empty.unmatched) == ({}, {}, [])


def test_a_reused_client_id_is_reported_as_already_used() -> None:
    batch = items(2)
    body = {"entities": [entity(batch[1], "sms_b")],
            "errors": [{"index": 0, "clientId": batch[0].client_id, "to": batch[0].to,
                        "errors": {"clientId": ["already used"]}}]}
    result = make_client(respond(201, body)).send_bulk(batch)
    assert result.rejected[batch[0].client_id].already_used
    assert batch[1].client_id not in result.rejected


def test_an_error_entry_with_odd_error_values_is_normalised_to_lists_of_strings() -> None:
    batch = items(2)
    body = {"errors": [{"clientId": batch[0].client_id, "errors": {"to": "invalid", "text": [1, "x"]}},
                       {"clientId": batch[1].client_id, "errors": "weird"}]}
    result = make_client(respond(201, body)).send_bulk(batch)
    assert result.rejected[batch[0].client_id].errors == {"to": ["invalid"], "text": ["1", "x"]}
    assert list(result.rejected[batch[1].client_id].errors) == ["item"]


# -- rate-limit bookkeeping ---------------------------------------------------------------------
def test_rate_limit_headers_are_kept_per_endpoint_and_as_the_latest() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/sms/bulk"):
            headers = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "42", "X-RateLimit-Reset": "1900000060"}
            return httpx.Response(201, json={"entities": [], "errors": []}, headers=headers)
        headers = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "599", "X-RateLimit-Reset": "1900000120"}
        return httpx.Response(200, json={"entity": {"id": "sms_9", "status": "enqueued"}}, headers=headers)

    client = make_client(handler)
    assert client.rate_limits == {} and client.last_rate_limit is None
    client.send_bulk(items(1))
    assert client.rate_limits["POST /sms/bulk"] == RateLimitInfo(limit=100, remaining=42, reset=1900000060.0)
    assert client.last_rate_limit == client.rate_limits["POST /sms/bulk"]
    client.get_sms("sms_9")
    assert client.rate_limits["GET /sms/{id}"] == RateLimitInfo(limit=600, remaining=599, reset=1900000120.0)
    assert client.last_rate_limit == client.rate_limits["GET /sms/{id}"]
    assert client.rate_limits["POST /sms/bulk"].remaining == 42


def test_rate_limit_headers_are_kept_from_error_answers_too() -> None:
    client = make_client(respond(429, headers={**RATE_HEADERS, "X-RateLimit-Remaining": "0"}))
    with pytest.raises(RateLimited):
        client.send_bulk(items(1))
    assert client.rate_limits["POST /sms/bulk"].remaining == 0


def test_an_answer_without_rate_limit_headers_leaves_the_last_known_ones() -> None:
    client = make_client(respond(200, {"entity": {"available": 1.0, "currency": "EUR"}}))
    client.account()
    assert client.rate_limits == {} and client.last_rate_limit is None


@pytest.mark.parametrize("headers", [{}, {"X-RateLimit-Limit": "10"}, {**RATE_HEADERS, "X-RateLimit-Limit": "x"},
                                     {**RATE_HEADERS, "X-RateLimit-Reset": "nan"}])
def test_partial_or_unreadable_rate_limit_headers_are_ignored(headers: dict[str, str]) -> None:
    assert parse_rate_limit(httpx.Headers(headers)) is None


# -- the other methods --------------------------------------------------------------------------
def test_list_sms_asks_for_a_page_and_filters_by_client_id() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"entities": [{"id": "s1", "clientId": "a"}, "junk"]})

    result = make_client(handler).list_sms(page=3, per_page=50, client_ids=["a", "b"])
    assert [s.id for s in result] == ["s1"]
    params = seen[0].url.params
    assert (params["page"], params["per_page"], params.get_list("clientId")) == ("3", "50", ["a", "b"])


def test_find_by_client_ids_follows_full_pages_and_asks_for_at_most_a_hundred_ids_at_once() -> None:
    wanted = [f"cid-{i:03d}" for i in range(150)]
    store = [{"id": f"noise-{i}", "clientId": f"other-{i}"} for i in range(30)]
    store += [{"id": f"sms-{cid}", "clientId": cid, "status": "enqueued"} for cid in wanted[:140]]
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        ids = set(request.url.params.get_list("clientId"))
        page, per_page = int(request.url.params["page"]), int(request.url.params["per_page"])
        # A server that ignores the filter for some ids: noise comes back too.
        matching = [e for e in store if e["clientId"] in ids or e["clientId"].startswith("other-")]
        return httpx.Response(200, json={"entities": matching[(page - 1) * per_page: page * per_page]})

    found = make_client(handler).find_by_client_ids(wanted)
    assert set(found) == set(wanted[:140])
    assert found["cid-007"].id == "sms-cid-007"
    assert all(len(r.url.params.get_list("clientId")) <= 100 for r in requests)
    # First 100 ids: a full page (30 noise + 70 hits), then one that completes them; last 50 ids: a short
    # page proves nothing (a server may cap per_page), so the search reads on to the empty page.
    assert [(r.url.params["page"], len(r.url.params.get_list("clientId"))) for r in requests] == [
        ("1", 100), ("2", 100), ("1", 50), ("2", 50)]


def test_an_account_answer_without_a_balance_is_an_unknown_outcome() -> None:
    with pytest.raises(OutcomeUnknown):
        make_client(respond(200, {"entity": {"id": "acc", "currency": "EUR"}})).account()
    account = make_client(respond(200, {"entity": {"available": "12.5", "currency": "EUR"}})).account()
    assert (account.available, account.currency) == (12.5, "EUR")


def test_price_lists_skip_entries_they_cannot_read() -> None:
    body = {"entities": [{"country": "es", "prefix": "34", "price": 0.045, "currency": "EUR"},
                         {"country": "FR"}, {"price": 1}, {"country": "PT", "price": "0.05"}]}
    client = make_client(respond(200, body))
    for prices in (client.sms_prices(), client.lookup_prices()):
        assert [(p.country, p.price) for p in prices] == [("ES", 0.045), ("PT", 0.05)]


def test_the_client_closes_its_pool_as_a_context_manager() -> None:
    with make_client(respond(200, {"entity": {"available": 1, "currency": "EUR"}})) as client:
        client.account()
    assert client._http.is_closed
