"""Every client method against the real sandbox over HTTP, including its injected faults."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from dispatcher.dev.services import free_port
from dispatcher.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    InsufficientFunds,
    NotFound,
    OutcomeUnknown,
    RateLimited,
)
from dispatcher.instasent.client import InstasentClient
from dispatcher.instasent.models import SmsItem
from dispatcher.instasent.segments import count_segments
from dispatcher.settings import Settings
from tests.helpers import SANDBOX_TOKEN, SandboxHandle

ES_PRICE = 0.045
LOOKUP_PRICE = 0.004
WRONG_TOKEN = "wrong-tok-Vb83-LEAKCANARY"


def es_number(i: int) -> str:
    """A valid Spanish mobile number whose last digits never trigger an HLR rule by accident."""
    return f"+34600{i:04d}00"


def make_items(n: int, prefix: str = "t", start: int = 0) -> list[SmsItem]:
    return [SmsItem(sender="Acme", to=es_number(i), text=f"Hello {i}", client_id=f"{prefix}-{i:04d}")
            for i in range(start, start + n)]


@pytest.fixture()
def client(settings: Settings) -> Iterator[InstasentClient]:
    with InstasentClient.from_settings(settings) as c:
        yield c


# -- SMS ----------------------------------------------------------------------------------------
def test_send_bulk_accepts_valid_items_and_returns_their_ids(client: InstasentClient, sandbox: SandboxHandle) -> None:
    batch = make_items(5)
    result = client.send_bulk(batch)
    assert set(result.accepted) == {item.client_id for item in batch}
    assert result.rejected == {} and result.unmatched == []
    ids = {sms.id for sms in result.accepted.values()}
    assert len(ids) == 5 and "" not in ids
    for item in batch:
        sms = result.accepted[item.client_id]
        assert (sms.client_id, sms.to, sms.text, sms.sender) == (item.client_id, item.to, item.text, item.sender)
        assert sms.status == "enqueued"
        assert sms.parts == 1
        assert sms.price == pytest.approx(ES_PRICE)
    recorded = {m["clientId"] for m in sandbox.messages()}
    assert recorded == {item.client_id for item in batch}


def test_send_bulk_rejects_bad_items_with_per_field_errors_and_accepts_the_rest(client: InstasentClient) -> None:
    good = make_items(2)
    bad_to = SmsItem(sender="Acme", to="+34123", text="hi", client_id="bad-to")
    bad_from = SmsItem(sender="WayTooLongSenderName", to=es_number(7), text="hi", client_id="bad-from")
    bad_text = SmsItem(sender="Acme", to=es_number(8), text="", client_id="bad-text")
    result = client.send_bulk([good[0], bad_to, bad_from, good[1], bad_text])
    assert set(result.accepted) == {good[0].client_id, good[1].client_id}
    assert set(result.rejected) == {"bad-to", "bad-from", "bad-text"}
    assert "to" in result.rejected["bad-to"].errors
    assert "from" in result.rejected["bad-from"].errors
    assert "text" in result.rejected["bad-text"].errors
    for rejected in result.rejected.values():
        assert not rejected.already_used
        assert all(isinstance(m, str) and m for msgs in rejected.errors.values() for m in msgs)
    assert result.rejected["bad-to"].to == "+34123"
    assert result.unmatched == []


def test_a_client_id_already_accepted_comes_back_as_already_used(client: InstasentClient,
                                                                 sandbox: SandboxHandle) -> None:
    batch = make_items(3)
    first = client.send_bulk(batch)
    assert len(first.accepted) == 3
    again = client.send_bulk([*batch[:2], *make_items(1, start=50)])
    assert set(again.rejected) == {batch[0].client_id, batch[1].client_id}
    assert all(r.already_used for r in again.rejected.values())
    assert set(again.accepted) == {"t-0050"}
    assert len(sandbox.messages()) == 4  # the resend delivered nothing twice


def test_send_returns_the_accepted_sms_and_get_sms_reads_it_back(client: InstasentClient) -> None:
    item = make_items(1)[0]
    sms = client.send(item)
    assert sms.id
    assert (sms.client_id, sms.to, sms.text, sms.status) == (item.client_id, item.to, item.text, "enqueued")
    again = client.get_sms(sms.id)
    assert again.id == sms.id
    assert again.client_id == item.client_id
    assert again.to == item.to


def test_the_sandbox_counts_parts_and_prices_as_our_segment_counter(client: InstasentClient) -> None:
    texts = {"gsm": "a" * 161, "ext": "€" * 81, "utf16": "привет " * 11, "emoji": "😀" * 36}
    batch = [SmsItem(sender="Acme", to=es_number(i), text=text, client_id=f"seg-{name}",
                     allow_unicode=not count_segments(text).encoding.startswith("GSM"))
             for i, (name, text) in enumerate(texts.items())]
    result = client.send_bulk(batch)
    assert result.rejected == {}
    for item in batch:
        sms = result.accepted[item.client_id]
        seg = count_segments(item.text)
        assert (sms.parts, sms.encoding) == (seg.parts, seg.encoding), item.client_id
        assert sms.price == pytest.approx(seg.parts * ES_PRICE)


def test_an_unknown_sms_id_is_not_found(client: InstasentClient) -> None:
    with pytest.raises(NotFound) as info:
        client.get_sms("no-such-sms")
    assert info.value.status == 404


def test_list_sms_pages_through_every_message(client: InstasentClient) -> None:
    batch = make_items(25)
    client.send_bulk(batch)
    pages = [client.list_sms(page=p, per_page=10) for p in (1, 2, 3, 4)]
    assert [len(p) for p in pages] == [10, 10, 5, 0]
    seen = [sms.client_id for page in pages for sms in page]
    assert len(seen) == len(set(seen)) == 25
    assert set(seen) == {item.client_id for item in batch}


def test_list_sms_filters_by_client_id(client: InstasentClient) -> None:
    batch = make_items(6)
    client.send_bulk(batch)
    wanted = [batch[1].client_id, batch[4].client_id]
    assert {sms.client_id for sms in client.list_sms(client_ids=wanted)} == set(wanted)


def test_find_by_client_ids_finds_accepted_messages_and_ignores_unknown_ids(client: InstasentClient) -> None:
    batch = make_items(130)
    accepted = {}
    for start in range(0, len(batch), 100):
        accepted.update(client.send_bulk(batch[start:start + 100]).accepted)
    wanted = [item.client_id for item in batch] + ["never-sent-1", "never-sent-2"]
    found = client.find_by_client_ids(wanted)
    assert set(found) == {item.client_id for item in batch}
    assert {cid: sms.id for cid, sms in found.items()} == {cid: sms.id for cid, sms in accepted.items()}
    assert client.find_by_client_ids(["never-sent-1"]) == {}


# -- lookups ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("number", "status"), [("+34600000001", "valid"), ("+34600000013", "invalid"),
                                                ("+34600000037", "unreachable")])
def test_a_lookup_follows_the_sandboxs_number_rule(client: InstasentClient, number: str, status: str) -> None:
    lookup = client.lookup(number)
    assert lookup.id
    assert (lookup.to, lookup.status, lookup.country) == (number, status, "ES")
    assert lookup.price == pytest.approx(LOOKUP_PRICE)
    if status == "invalid":
        assert (lookup.mcc, lookup.mnc, lookup.network) == ("", "", "")
    else:
        assert lookup.mcc == "214"
        assert lookup.network


def test_get_lookup_and_list_lookups_read_lookups_back(client: InstasentClient) -> None:
    made = [client.lookup(n) for n in ("+34600000001", "+34600000013", "+34600000037")]
    for lookup in made:
        assert client.get_lookup(lookup.id) == lookup
    listed = client.list_lookups()
    assert {lk.id for lk in listed} == {lk.id for lk in made}
    assert [len(client.list_lookups(page=p, per_page=2)) for p in (1, 2)] == [2, 1]


def test_an_unknown_lookup_id_is_not_found(client: InstasentClient) -> None:
    with pytest.raises(NotFound):
        client.get_lookup("no-such-lookup")


# -- account and prices -------------------------------------------------------------------------
def test_the_account_balance_goes_down_by_the_price_of_each_accepted_part(client: InstasentClient) -> None:
    before = client.account()
    assert before.currency == "EUR"
    assert before.available > 0
    client.send_bulk([SmsItem(sender="Acme", to=es_number(1), text="a" * 161, client_id="two-parts")])
    after = client.account()
    assert after.available == pytest.approx(before.available - 2 * ES_PRICE)


def test_sms_and_lookup_price_lists_cover_spain(client: InstasentClient) -> None:
    sms_prices = {p.country: p for p in client.sms_prices()}
    assert sms_prices["ES"].price == pytest.approx(ES_PRICE)
    assert (sms_prices["ES"].prefix, sms_prices["ES"].currency) == ("34", "EUR")
    assert len(sms_prices) > 100
    lookup_prices = {p.country: p for p in client.lookup_prices()}
    assert lookup_prices["ES"].price == pytest.approx(LOOKUP_PRICE)


def test_a_balance_too_low_for_the_bulk_is_insufficient_funds(client: InstasentClient,
                                                              sandbox: SandboxHandle) -> None:
    sandbox.reset(balance=0.01)
    with pytest.raises(InsufficientFunds) as info:
        client.send_bulk(make_items(2))
    assert info.value.maybe_processed is False
    assert sandbox.messages() == []
    assert client.account().available == pytest.approx(0.01)


# -- protocol details ---------------------------------------------------------------------------
def test_rate_limit_headers_are_exposed_after_a_call(client: InstasentClient) -> None:
    client.send_bulk(make_items(1))
    info = client.rate_limits["POST /sms/bulk"]
    assert info.limit >= 0 and info.remaining >= 0 and info.reset > 0
    client.account()
    assert "GET /organization/account" in client.rate_limits
    assert client.last_rate_limit == client.rate_limits["GET /organization/account"]


def test_a_wrong_token_is_an_authentication_failure(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    with InstasentClient.from_settings(settings.with_overrides(instasent_token=WRONG_TOKEN)) as wrong:
        with pytest.raises(AuthenticationFailed) as info:
            wrong.send_bulk(make_items(1))
        with pytest.raises(AuthenticationFailed):
            wrong.account()
        assert WRONG_TOKEN not in repr(wrong)
    assert WRONG_TOKEN not in str(info.value) and WRONG_TOKEN not in repr(info.value)
    assert WRONG_TOKEN not in caplog.text


def test_the_token_never_reaches_the_logs_of_a_real_http_exchange(client: InstasentClient,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "dispatcher"):
        caplog.set_level(logging.DEBUG, logger=name)
    client.send_bulk(make_items(2))
    client.account()
    with pytest.raises(NotFound):
        client.get_sms("missing")
    assert any(r.name.startswith("httpcore") for r in caplog.records), "httpcore should log at DEBUG"
    for record in caplog.records:
        assert SANDBOX_TOKEN not in record.getMessage()
    assert SANDBOX_TOKEN not in caplog.text


@pytest.mark.parametrize("suffix", ["/transactional/v1", "/transactional/v1/", "/"])
def test_a_base_url_with_or_without_the_transactional_prefix_works(settings: Settings, suffix: str) -> None:
    with InstasentClient.from_settings(settings.with_overrides(
            instasent_base_url=settings.instasent_base_url + suffix)) as c:
        result = c.send_bulk(make_items(2))
        assert len(result.accepted) == 2
        assert c.get_sms(next(iter(result.accepted.values())).id).client_id == "t-0000"
        assert c.account().currency == "EUR"
        assert c.lookup("+34600000013").status == "invalid"


def test_a_closed_port_means_nothing_was_sent(settings: Settings) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with (InstasentClient.from_settings(settings.with_overrides(instasent_base_url=closed)) as c,
          pytest.raises(ConnectionFailed) as info):
        c.send_bulk(make_items(1))
    assert info.value.maybe_processed is False


# -- faults -------------------------------------------------------------------------------------
def test_an_error_before_acceptance_is_an_unknown_outcome_and_nothing_is_found_later(
        client: InstasentClient, sandbox: SandboxHandle) -> None:
    sandbox.faults(error_rate=1.0)
    batch = make_items(3)
    with pytest.raises(OutcomeUnknown) as info:
        client.send_bulk(batch)
    assert info.value.status == 500
    assert client.find_by_client_ids([item.client_id for item in batch]) == {}


def test_an_error_after_acceptance_is_an_unknown_outcome_yet_the_messages_are_found(
        client: InstasentClient, sandbox: SandboxHandle) -> None:
    sandbox.faults(error_after_accept_rate=1.0)
    batch = make_items(4)
    with pytest.raises(OutcomeUnknown) as info:
        client.send_bulk(batch)
    assert info.value.maybe_processed is True
    assert info.value.status == 500
    found = client.find_by_client_ids([item.client_id for item in batch])
    assert set(found) == {item.client_id for item in batch}
    assert all(sms.id for sms in found.values())


def test_a_resend_after_an_unknown_outcome_is_refused_as_already_used(
        client: InstasentClient, sandbox: SandboxHandle) -> None:
    sandbox.faults(error_after_accept_rate=1.0)
    batch = make_items(2)
    with pytest.raises(OutcomeUnknown):
        client.send_bulk(batch)
    sandbox.faults(error_after_accept_rate=0.0)
    again = client.send_bulk(batch)
    assert again.accepted == {}
    assert all(r.already_used for r in again.rejected.values()) and len(again.rejected) == 2
    assert len(sandbox.messages()) == 2


def test_a_response_held_past_the_read_timeout_is_an_unknown_outcome(settings: Settings,
                                                                     sandbox: SandboxHandle) -> None:
    sandbox.faults(timeout_rate=1.0, timeout_hold_s=2)
    batch = make_items(3)
    with InstasentClient.from_settings(settings.with_overrides(read_timeout_s=0.5)) as c:
        with pytest.raises(OutcomeUnknown) as info:
            c.send_bulk(batch)
        assert info.value.maybe_processed is True
        assert info.value.status is None
        found = c.find_by_client_ids([item.client_id for item in batch])
    assert set(found) == {item.client_id for item in batch}


def test_a_throttled_request_is_rate_limited_with_a_reset_time(client: InstasentClient,
                                                               sandbox: SandboxHandle) -> None:
    sandbox.faults(throttle_rate=1.0)
    with pytest.raises(RateLimited) as info:
        client.send_bulk(make_items(1))
    assert info.value.maybe_processed is False
    assert info.value.reset_at is not None and info.value.reset_at > 0
    assert sandbox.messages() == []
