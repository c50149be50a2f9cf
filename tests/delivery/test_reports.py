"""Applying delivery reports, opt-outs and reconciliation, in process against real Redis."""

from __future__ import annotations

import orjson
import pandas as pd
import pytest
import redis

from bench.whole_list import submit_prepared
from dispatcher.delivery.optout import handle_optout, inbound_messages, is_stop, keep_inbound
from dispatcher.delivery.reconcile import reconcile
from dispatcher.delivery.reports import NO_TIME, DeliveryBook, Report, UnknownStatus, event_micros, parse_reports
from dispatcher.errors import InputError
from dispatcher.keys import Keys
from dispatcher.preflight.suppression import SuppressionList
from dispatcher.schema.names import REFUSED_REPORTS, REPORT_STATUSES
from dispatcher.sending import ledger
from dispatcher.sending.attempt import send_batch
from dispatcher.sending.context import SendContext
from dispatcher.sending.ratelimit import Lane
from dispatcher.sending.telemetry import read as read_telemetry
from tests.fakes import FakeInstasent
from tests.helpers import Queue, record_sent


def frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"row": range(2, n + 2), "to": [f"+3460000{i:04d}" for i in range(n)], "text": ["x"] * n,
                         "sender": ["ACME"] * n, "parts": [1] * n, "unicode": [False] * n, "price": [0.05] * n,
                         "country": ["ES"] * n})


def report(cid: str, index: int, status: str = "delivered", at: str = "2026-11-23T10:00:00Z") -> Report:
    return Report(instasent_id=f"i{index}", client_id=f"{cid}-0-{index}", status=status, code=0, event_at=at)


def refused(client: redis.Redis, keys: Keys) -> dict[str, float]:
    """The refused-report counters, by reason."""
    counters = read_telemetry(client, keys)
    return {reason: counters.get(name, 0.0) for reason, name in REFUSED_REPORTS.items()}


@pytest.fixture()
def book(redis_client: redis.Redis) -> DeliveryBook:
    return DeliveryBook(redis_client, Keys("dsptest"))


def sent(book: DeliveryBook, cid: str, *ks: int) -> None:
    record_sent(book.redis, book.keys, cid, list(ks))


def test_a_report_twice_changes_nothing_the_second_time(sender: SendContext, book: DeliveryBook) -> None:
    cid = sender.store.create("x", frame(3), window=4)
    sent(book, cid, 0)
    assert book.apply(report(cid, 0)) == "applied"
    assert book.apply(report(cid, 0)) == "duplicate"
    info = sender.store.get(cid)
    assert (info.delivery["delivered"], info.counts["sent"]) == (1, 1)


def test_an_early_report_is_held_until_the_send_is_recorded_and_then_applied(sender: SendContext, book: DeliveryBook,
                                                                              fake: FakeInstasent) -> None:
    cid = sender.store.create("x", frame(3), window=4)
    sender.ops.reserve(cid)
    # Message 1's report arrives before the batch's outcome is recorded: held, not taken for a send.
    early = Report(instasent_id=f"id-{cid}-0-1", client_id=f"{cid}-0-1", status="failed", code=0,
                   event_at="2026-11-23T10:00:00Z")
    assert book.apply(early) == "held"
    assert sender.store.get(cid).counts["sent"] == 0
    send_batch(sender, cid, 0)
    assert book.retry_held() == 1
    info = sender.store.get(cid)
    assert (info.counts["sent"], info.delivery["undelivered"], info.state) == (3, 1, "completed")
    assert fake.posted == {f"{cid}-0-0": 1, f"{cid}-0-1": 1, f"{cid}-0-2": 1}
    assert book.redis.hlen(book.keys.dlr_held()) == 0


def test_a_held_report_whose_id_is_not_the_one_sent_is_refused_once_the_send_is_recorded(
        sender: SendContext, book: DeliveryBook) -> None:
    cid = sender.store.create("x", frame(3), window=4)
    sender.ops.reserve(cid)
    assert book.apply(report(cid, 1, "failed")) == "held"  # id i1; the fake answers id-{clientId}
    send_batch(sender, cid, 0)
    assert book.retry_held() == 0
    info = sender.store.get(cid)
    assert (info.counts["sent"], info.delivery) == (3, {"delivered": 0, "undelivered": 0})
    assert sender.store.deliveries(cid, 0) == {}
    assert refused(book.redis, book.keys)["mismatch"] == 1
    assert book.redis.hlen(book.keys.dlr_held()) == 0


def test_a_later_status_moves_the_counters_and_an_older_one_is_ignored(sender: SendContext, book: DeliveryBook) -> None:
    cid = sender.store.create("x", frame(3), window=4)
    sent(book, cid, 0)
    book.apply(report(cid, 0, "buffered", "2026-11-23T10:00:00Z"))
    book.apply(report(cid, 0, "failed", "2026-11-23T10:00:05Z"))
    assert book.apply(report(cid, 0, "accepted", "2026-11-23T10:00:01Z")) == "stale"
    book.apply(report(cid, 0, "delivered", "2026-11-23T10:00:09Z"))
    info = sender.store.get(cid)
    assert info.delivery == {"delivered": 1, "undelivered": 0}
    assert sender.store.deliveries(cid, 0)[0][0] == "delivered"


def test_a_report_never_records_a_message_sent_whether_it_is_unknown_rejected_or_pending(
        sender: SendContext, book: DeliveryBook) -> None:
    cid = sender.store.create("x", frame(3), window=4)
    token = sender.ops.claim(cid, 0, lease_s=0).token
    sender.ops.record(cid, 0, [(0, ledger.encode("unknown", 1)), (1, ledger.encode("rejected", 1, "bad"))],
                      otherwise="u", token=token)
    assert book.apply(report(cid, 0)) == "held"  # unknown: reconciliation asks Instasent, then the report matches
    assert book.apply(report(cid, 1)) == "mismatch"  # rejected: it was never sent, and never will be
    assert book.apply(report(cid, 2)) == "held"  # pending: not sent yet
    info = sender.store.get(cid)
    assert (info.counts["sent"], info.counts["unknown"], info.counts["rejected"]) == (0, 1, 1)
    assert info.delivery == {"delivered": 0, "undelivered": 0} and sender.store.deliveries(cid, 0) == {}
    assert refused(book.redis, book.keys)["mismatch"] == 1


def test_a_report_whose_id_is_not_the_recorded_one_is_refused_and_counted(sender: SendContext,
                                                                          book: DeliveryBook) -> None:
    cid = sender.store.create("x", frame(2), window=4)
    hex_ids = {0: "5f1e2d3c4b5a69788796a5b4", 1: "plain-id-1"}  # a packed record and an unpacked one
    record_sent(book.redis, book.keys, cid, [0, 1], id_of=hex_ids.__getitem__)
    for k, real in hex_ids.items():
        right = Report(real, f"{cid}-0-{k}", "delivered", 0, "2026-11-23T10:00:00Z")
        assert book.apply(right) == "applied"
        for forged_id in ("", real.upper(), real[:-1], "i0", real + "0"):
            forged = Report(forged_id, f"{cid}-0-{k}", "failed", 0, "2026-11-23T10:00:09Z")
            assert book.apply(forged) == "mismatch", (k, forged_id)
    info = sender.store.get(cid)
    assert info.delivery == {"delivered": 2, "undelivered": 0}
    assert [sender.store.deliveries(cid, 0)[k][0] for k in (0, 1)] == ["delivered", "delivered"]
    assert refused(book.redis, book.keys)["mismatch"] == 10


def test_a_send_recorded_without_an_id_takes_the_id_of_its_first_report(sender: SendContext,
                                                                        book: DeliveryBook) -> None:
    cid = sender.store.create("x", frame(1), window=4)
    # A 'clientId already used' answer proves the send but names no id.
    record_sent(book.redis, book.keys, cid, [0], id_of=lambda _: "")
    assert book.apply(Report("first", f"{cid}-0-0", "buffered", 0, "2026-11-23T10:00:00Z")) == "applied"
    assert book.apply(Report("other", f"{cid}-0-0", "failed", 0, "2026-11-23T10:00:05Z")) == "mismatch"
    assert book.apply(Report("first", f"{cid}-0-0", "delivered", 0, "2026-11-23T10:00:09Z")) == "applied"
    assert sender.store.deliveries(cid, 0)[0] == ("delivered", "2026-11-23T10:00:09Z", "0")
    assert sender.store.get(cid).delivery == {"delivered": 1, "undelivered": 0}


def test_a_report_for_an_unknown_campaign_is_held_and_applied_later(sender: SendContext, book: DeliveryBook) -> None:
    assert book.apply(report("feedbeef00", 0)) == "held"
    assert book.retry_held() == 0
    cid = sender.store.create("x", frame(1), window=4)
    book.redis.hset(book.keys.dlr_held(), "other", book.redis.hget(book.keys.dlr_held(),
                                                                   next(iter(book.redis.hkeys(book.keys.dlr_held())))))
    book.redis.hdel(book.keys.dlr_held(), next(k for k in book.redis.hkeys(book.keys.dlr_held()) if k != b"other"))
    # Rewrite the held report to name the campaign that now exists.
    raw = book.redis.hget(book.keys.dlr_held(), "other").replace(b"feedbeef00", cid.encode())
    book.redis.hset(book.keys.dlr_held(), "other", raw)
    assert book.retry_held() == 0  # the campaign exists, but its message is not sent yet
    sent(book, cid, 0)
    assert book.retry_held() == 1
    assert sender.store.get(cid).delivery["delivered"] == 1


def test_a_stop_report_and_an_inbound_stop_word_suppress_the_number(sender: SendContext,
                                                                    redis_client: redis.Redis) -> None:
    keys = Keys("dsptest")
    cid = sender.store.create("x", frame(2), window=4)
    handle_optout(redis_client, keys, report(cid, 1, "stop"))
    inbound = Report("", f"{cid}-0-0", "received", 0, "2026-11-23T10:00:00Z", message="Baja, gracias",
                     sender="+34600000000")
    handle_optout(redis_client, keys, inbound)
    keep_inbound(redis_client, keys, inbound)
    suppressed = SuppressionList(redis_client, keys)
    assert "+34600000001" in suppressed and "+34600000000" in suppressed
    assert inbound_messages(redis_client, keys, cid)[0]["stop"] is True
    assert is_stop("STOP") and is_stop(" stop please") and not is_stop("no stop")


def test_a_number_suppressed_after_the_preflight_is_skipped_at_send_time(sender: SendContext,
                                                                          redis_client: redis.Redis) -> None:
    cid = sender.store.create("x", frame(5), window=4)
    sender.ops.reserve(cid)
    SuppressionList(redis_client, Keys("dsptest")).add(["+34600000003"])
    send_batch(sender, cid, 0)
    counts = sender.store.get(cid).counts
    assert (counts["sent"], counts["suppressed"]) == (4, 1)


def test_a_number_suppressed_after_a_versioned_preflight_is_still_skipped_at_send_time(
        sender: SendContext, redis_client: redis.Redis) -> None:
    suppression = SuppressionList(redis_client, Keys("dsptest"))
    suppression.add(["+34699999999"])
    cid = sender.store.create("x", frame(5), window=4, suppression_version=suppression.version())
    sender.ops.reserve(cid)
    suppression.add(["+34600000002"])  # after the preflight: the version moves on
    send_batch(sender, cid, 0)
    counts = sender.store.get(cid).counts
    assert (counts["sent"], counts["suppressed"]) == (4, 1)


def test_a_claim_asks_for_the_suppression_check_only_when_the_list_may_hold_a_new_number(
        sender: SendContext, redis_client: redis.Redis) -> None:
    suppression = SuppressionList(redis_client, Keys("dsptest"))
    slot = sender.limiter.slot_request(sender.bulk_lane, 0.0)
    unversioned = sender.store.create("x", frame(5), window=4)
    assert not sender.ops.claim(unversioned, 0, 60, slot=slot).check_suppression  # the list is empty
    suppression.add(["+34699999999"])
    seen, stale = (sender.store.create(name, frame(5), window=4, suppression_version=suppression.version())
                   for name in ("seen", "stale"))
    assert not sender.ops.claim(seen, 0, 60, slot=slot).check_suppression  # checked by its preflight
    assert sender.ops.claim(sender.store.create("z", frame(5), window=4), 0, 60, slot=slot).check_suppression
    suppression.add(["+34600000001"])
    assert sender.ops.claim(stale, 0, 60, slot=slot).check_suppression  # the list grew since


def test_a_claim_that_can_send_takes_its_rate_limit_slot_in_the_same_call(sender: SendContext) -> None:
    slot = sender.limiter.slot_request(Lane("sms_bulk", per_minute=60), 10.0)  # a slot a second
    first = sender.ops.claim(sender.store.create("a", frame(5), window=4), 0, 60, slot=slot)
    second = sender.ops.claim(sender.store.create("b", frame(5), window=4), 0, 60, slot=slot)
    assert first.slot_s == 0.0  # taken now
    assert second.slot_s is not None and -1.1 < second.slot_s < -0.9  # booked a second later
    assert sender.ops.claim(sender.store.create("c", frame(5), window=4), 0, 60).slot_s is None  # no lane asked


def test_reconcile_resolves_unknowns_and_resends_only_what_was_never_accepted(
        sender: SendContext, book: DeliveryBook, fake: FakeInstasent) -> None:
    queue = Queue()
    cid = submit_prepared(sender.store, sender.ops, queue, sender.settings, name="x", messages=frame(10))
    queue.items.clear()
    # A batch whose every answer was lost and whose retries gave up: all ten messages unknown,
    # of which Instasent really accepted six.
    claim = sender.ops.claim(cid, 0, lease_s=0)
    assert claim.claimed
    sender.ops.record(cid, 0, [(i, ledger.encode("unknown", 3, "timed out")) for i in range(10)], otherwise="u",
                      give_up=True, token=claim.token)
    fake.accepted = {f"{cid}-0-{i}": 1 for i in range(6)}
    info = sender.store.get(cid)
    assert info.counts["unknown"] == 10 and info.state == "completed"
    result = reconcile(sender.store, sender.ops, book, queue, cid, grace_s=0)
    assert result.batches == [0]
    queue.drain(sender, [], fake)
    info = sender.store.get(cid)
    assert (info.counts["sent"], info.counts["unknown"]) == (10, 0)
    assert set(fake.accepted.values()) == {1}


def test_malformed_reports_are_input_errors() -> None:
    for body in (b"not json", b"[1]", b'{"clientId": "a-0-0"}', b'{"status": "delivered"}',
                 b'{"status": "delivered", "clientId": "a-0-0", "code": "x"}'):
        with pytest.raises(InputError):
            parse_reports(body)
    assert len(parse_reports(b'[{"status":"delivered","clientId":"a-0-0"},{"message":"hi","from":"+1"}]')) == 2


# -- ordering by meaning ----------------------------------------------------------------------------

#: Every status Instasent documents, plus two it does not (they rank lowest, by name), from the
#: lowest rank to the highest: at the same instant the later one in this list wins.
ORDER = ["enqueued", "zeta", "unknown", "sent", "accepted", "buffered", "stop",
         "canceled", "expired", "rejected", "error", "failed", "delivered"]
FINAL = {"canceled", "expired", "rejected", "error", "failed", "delivered"}
#: Two instants half a second apart; the later one sorts *before* the earlier one as text.
EARLY, LATE = "2026-11-23T10:00:05Z", "2026-11-23T10:00:05.500Z"
#: EARLY again, written with an offset and a fraction.
EARLY_AGAIN = "2026-11-23T11:00:05.000+01:00"
INSTANT = {EARLY: 0, LATE: 1, EARLY_AGAIN: 0}


def at(cid: str, k: int, status: str, when: str) -> Report:
    return Report(instasent_id=f"i{k}", client_id=f"{cid}-{k // 100}-{k % 100}", status=status, code=0,
                  event_at=when)


def winner(first: tuple[str, str], second: tuple[str, str]) -> str:
    """What the two reports mean, by the rules: final beats non-final, then later, then rank."""
    def key(r: tuple[str, str]) -> tuple[bool, int, int]:
        return r[0] in FINAL, INSTANT[r[1]], ORDER.index(r[0])
    return max(first, second, key=key)[0]


def test_every_pair_of_statuses_ends_in_the_same_meaningful_state_whatever_order_they_arrive_in(
        sender: SendContext, book: DeliveryBook) -> None:
    cases = [((a, ta), (b, tb)) for a in ORDER for b in ORDER
             for ta, tb in ((EARLY, LATE), (LATE, EARLY), (EARLY, EARLY_AGAIN))]
    cid = sender.store.create("x", frame(2 * len(cases)), window=4)
    sent(book, cid, *range(2 * len(cases)))
    expected: dict[int, str] = {}
    for i, (one, two) in enumerate(cases):
        for k, (first, second) in ((2 * i, (one, two)), (2 * i + 1, (two, one))):
            book.apply(at(cid, k, *first))
            book.apply(at(cid, k, *second))
            expected[k] = winner(one, two)
    kept = {100 * n + i: d[0] for n in range(sender.store.get(cid).batches)
            for i, d in sender.store.deliveries(cid, n).items()}
    wrong = {k: (cases[k // 2], kept[k], expected[k]) for k in expected if kept[k] != expected[k]}
    assert not wrong, f"{len(wrong)} wrong, e.g. {list(wrong.values())[:3]}"
    info = sender.store.get(cid)
    winners = list(expected.values())
    assert info.delivery == {"delivered": winners.count("delivered"),
                             "undelivered": sum(1 for w in winners if w in FINAL - {"delivered"})}


def test_a_non_final_report_after_a_delivery_does_not_take_the_delivery_back(sender: SendContext,
                                                                               book: DeliveryBook) -> None:
    cid = sender.store.create("x", frame(1), window=4)
    sent(book, cid, 0)
    book.apply(report(cid, 0, "delivered", "2026-11-23T10:00:05Z"))
    assert book.apply(report(cid, 0, "buffered", "2026-11-23T10:00:06Z")) == "stale"
    assert sender.store.get(cid).delivery == {"delivered": 1, "undelivered": 0}
    assert sender.store.deliveries(cid, 0)[0] == ("delivered", "2026-11-23T10:00:05Z", "0")


def test_a_report_half_a_second_later_is_newer_though_it_sorts_first_as_text(sender: SendContext,
                                                                             book: DeliveryBook) -> None:
    cid = sender.store.create("x", frame(1), window=4)
    sent(book, cid, 0)
    book.apply(report(cid, 0, "failed", "2026-11-23T10:00:05Z"))
    assert book.apply(report(cid, 0, "delivered", "2026-11-23T10:00:05.500Z")) == "applied"
    assert book.apply(report(cid, 0, "expired", "2026-11-23T10:00:05.250Z")) == "stale"
    assert sender.store.get(cid).delivery == {"delivered": 1, "undelivered": 0}


def test_two_reports_of_the_same_second_go_by_rank_not_by_arrival(sender: SendContext, book: DeliveryBook) -> None:
    cid = sender.store.create("x", frame(2), window=4)
    sent(book, cid, 0, 1)
    book.apply(report(cid, 0, "accepted", "2026-11-23T10:00:05Z"))
    book.apply(report(cid, 0, "sent", "2026-11-23T10:00:05Z"))
    book.apply(report(cid, 1, "sent", "2026-11-23T10:00:05Z"))
    book.apply(report(cid, 1, "accepted", "2026-11-23T11:00:05+01:00"))  # the same instant, elsewhere
    assert [sender.store.deliveries(cid, 0)[i][0] for i in (0, 1)] == ["accepted", "accepted"]


def test_a_record_in_the_older_three_field_form_is_still_read_and_replaced(sender: SendContext, book: DeliveryBook,
                                                                         redis_client: redis.Redis) -> None:
    cid = sender.store.create("x", frame(1), window=4)
    sent(book, cid, 0)
    redis_client.hset(Keys("dsptest").delivery(cid, 0), "0", "buffered|2026-11-23T10:00:09Z|0")
    assert sender.store.deliveries(cid, 0)[0] == ("buffered", "2026-11-23T10:00:09Z", "0")
    redis_client.hset(Keys("dsptest").delivery(cid, 0), "1", "delivered")
    assert sender.store.deliveries(cid, 0)[1] == ("delivered", "", "")
    assert book.apply(report(cid, 0, "delivered", "2026-11-23T10:00:01Z")) == "applied"
    assert sender.store.deliveries(cid, 0)[0] == ("delivered", "2026-11-23T10:00:01Z", "0")


@pytest.mark.parametrize(("text", "micros"), [
    ("2026-11-23T10:00:05Z", 1795428005_000000),
    ("2026-11-23T10:00:05.5Z", 1795428005_500000),
    ("2026-11-23T10:00:05.123456789Z", 1795428005_123456),
    ("2026-11-23T11:00:05+01:00", 1795428005_000000),
    ("2026-11-23T05:00:05.250-05:00", 1795428005_250000),
    ("2026-11-23 10:00:05", 1795428005_000000),
    ("2026-11-23t10:00:05z", 1795428005_000000),
    ("1795428005.25", 1795428005_250000),
    ("", NO_TIME), ("yesterday", NO_TIME), ("nan", NO_TIME), ("2026-13-40T10:00:00Z", NO_TIME),
])
def test_event_times_are_read_with_fractions_and_offsets(text: str, micros: int) -> None:
    assert event_micros(text) == micros


@pytest.mark.parametrize(("body", "reason"), [
    (b"not json", "the body is not JSON"),
    (b"[1]", "a report must be a JSON object"),
    (b'"delivered"', "a report must be a JSON object"),
    (b'{"clientId": "a-0-0"}', "a delivery report needs a status"),
    (b'{"clientId": "a-0-0", "status": ""}', "a delivery report needs a status"),
    (b'{"clientId": "a-0-0", "status": 5}', "a delivery report needs a status"),
    (b'{"status": "delivered"}', "a delivery report needs a clientId"),
    (b'{"status": "delivered", "clientId": 7}', "a delivery report needs a clientId"),
    (b'{"status": "delivered", "clientId": "a-0-0", "code": "x"}', "code must be a number"),
    (b'{"status": "delivered", "clientId": "a-0-0", "code": [1]}', "code must be a number"),
])
def test_a_malformed_report_is_refused_with_the_reason(body: bytes, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_reports(body)
    assert str(caught.value) == reason


def test_a_delivery_report_is_read_field_by_field() -> None:
    body = (b'{"id": "abc", "clientId": "c1-0-4", "status": "DELIVERED", "code": "3",'
            b' "eventAt": "2026-11-23T10:00:05Z", "from": "ACME", "to": "+34600000004"}')
    assert parse_reports(body) == [Report(instasent_id="abc", client_id="c1-0-4", status="delivered", code=3,
                                          event_at="2026-11-23T10:00:05Z", message=None, sender="ACME",
                                          to="+34600000004")]
    bare = parse_reports(b'{"clientId": "c1-0-4", "status": "sent", "code": null}')[0]
    assert (bare.instasent_id, bare.code, bare.event_at, bare.sender, bare.to, bare.is_inbound) == (
        "", 0, "", "", "", False)


def test_an_inbound_message_needs_neither_status_nor_client_id() -> None:
    reply = parse_reports(b'{"message": "STOP", "from": "+34600000001", "to": "ACME", "id": 9}')[0]
    assert reply == Report(instasent_id="9", client_id="", status="received", code=0, event_at="", message="STOP",
                           sender="+34600000001", to="ACME")
    assert reply.is_inbound
    assert parse_reports(b'{"message": 42, "status": "Stop"}')[0].message == "42"
    assert parse_reports(b'{"message": 42, "status": "Stop"}')[0].status == "stop"


def test_a_report_for_a_client_id_that_is_not_ours_changes_nothing(sender: SendContext, book: DeliveryBook) -> None:
    cid = sender.store.create("x", frame(1), window=4)
    assert book.apply(Report("i", "someone-else", "delivered", 0, "2026-11-23T10:00:05Z")) == "foreign"
    assert sender.store.get(cid).delivery == {"delivered": 0, "undelivered": 0}


def test_a_separator_inside_a_report_cannot_corrupt_its_record(sender: SendContext, book: DeliveryBook) -> None:
    cid = sender.store.create("x", frame(1), window=4)
    sent(book, cid, 0)
    book.apply(report(cid, 0, "deli|vered", "2026-11-23T10:00:05Z|x"))
    assert sender.store.deliveries(cid, 0)[0] == ("delivered", "2026-11-23T10:00:05Zx", "0")
    assert sender.store.get(cid).delivery["delivered"] == 1


def test_every_held_report_is_applied_once_its_campaign_exists(sender: SendContext, book: DeliveryBook) -> None:
    cid = sender.store.create("x", frame(3), window=4)
    sent(book, cid, 0, 1, 2)
    book.redis.delete(book.keys.campaign(cid))  # the reports arrive before this Redis knows the campaign
    assert [book.apply(report(cid, i)) for i in range(3)] == ["held"] * 3
    assert book.retry_held() == 0
    book.redis.hset(book.keys.campaign(cid), "id", cid)
    assert book.retry_held() == 3
    assert book.retry_held() == 0
    assert book.redis.hget(book.keys.campaign(cid), "d:delivered") == b"3"


@pytest.mark.parametrize("status", ["DELIVRD", "delivrd", "enqueued", "received", "deliver ed", "déliveréd"])
def test_a_status_instasent_does_not_document_is_refused_with_the_list_it_takes(status: str) -> None:
    body = orjson.dumps({"id": "x", "clientId": "a-0-0", "status": status})
    with pytest.raises(UnknownStatus) as caught:
        parse_reports(body)
    assert str(caught.value).startswith(f"{status!r} is not a delivery status Instasent documents: expected one of")
    assert "delivered" in str(caught.value)


def test_every_documented_status_is_taken_in_any_case_and_kept_as_documented() -> None:
    for status in REPORT_STATUSES:
        for spelled in (status, status.upper(), status.capitalize()):
            body = orjson.dumps({"id": "x", "clientId": "a-0-0", "status": spelled})
            assert parse_reports(body)[0].status == status
    # A list with one unknown status is refused whole: nothing in it is applied.
    with pytest.raises(UnknownStatus):
        parse_reports(b'[{"clientId": "a-0-0", "status": "delivered"}, {"clientId": "a-0-1", "status": "DELIVRD"}]')
