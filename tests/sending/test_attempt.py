"""The batch algorithm, in process, against real Redis and a scripted Instasent on a loopback socket.

Each test scripts what Instasent does with each request, then checks the one property that
matters: every message ends in exactly one recorded state and none is accepted twice.
"""

from __future__ import annotations

import time as clock
from collections.abc import Callable
from datetime import UTC, datetime, time

import httpx
import orjson
import pandas as pd
import pytest
import redis

from dispatcher.delivery.reconcile import reconcile
from dispatcher.delivery.reports import DeliveryBook
from dispatcher.instasent.client import InstasentClient
from dispatcher.preflight.suppression import SuppressionList
from dispatcher.schema.names import State
from dispatcher.sending import campaigns
from dispatcher.sending.attempt import send_batch
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.context import SendContext
from dispatcher.sending.outcome import backoff
from dispatcher.sending.ratelimit import RateLimiter
from dispatcher.sending.store import CampaignStore
from dispatcher.sending.windows import Window as SendWindow
from tests.fakes import FakeInstasent, Window
from tests.helpers import Clock, Queue
from tests.loopback import Handler, loopback_client

Window9to10 = SendWindow(time(9), time(10))
Serve = Callable[[Handler], InstasentClient]


def messages(n: int, bad: int = 0) -> pd.DataFrame:
    rows = list(range(2, n + 2))
    to = [f"+3460000{i:04d}" for i in range(n)]
    for i in range(bad):
        to[i] = "+34699999999"
    return pd.DataFrame({"row": rows, "to": to, "text": ["hola"] * n, "sender": ["ACME"] * n, "parts": [1] * n,
                         "unicode": [False] * n, "price": [0.05] * n, "country": ["ES"] * n})


def create(sender: SendContext, frame: pd.DataFrame, window: int = 4) -> str:
    cid = sender.store.create("test", frame, window=window)
    assert list(sender.ops.reserve(cid)) == list(range(min(window, -(-len(frame) // 100))))
    return cid


def drive(sender: SendContext, cid: str, n: int, max_runs: int = 20) -> list[str]:
    """Run batch ``n`` the way redelivery and retries would, until it needs nothing more."""
    actions = []
    for _ in range(max_runs):
        outcome = send_batch(sender, cid, n)
        actions.append(outcome.action)
        if outcome.retry_in is None:
            return actions
    raise AssertionError(f"batch {n} never settled: {actions}")


def test_a_clean_batch_records_every_message_sent_with_its_instasent_id(sender: SendContext,
                                                                        fake: FakeInstasent) -> None:
    cid = create(sender, messages(100))
    assert drive(sender, cid, 0) == ["done"]
    info = sender.store.get(cid)
    assert info.counts["sent"] == 100 and info.state == "completed"
    _, _, records = next(sender.store.iter_batches(cid))
    assert records[0].instasent_id == f"id-{cid}-0-0"


def test_rejected_items_are_recorded_with_the_api_reason_and_the_rest_is_sent(sender: SendContext) -> None:
    cid = create(sender, messages(10, bad=3))
    drive(sender, cid, 0)
    counts = sender.store.get(cid).counts
    assert (counts["sent"], counts["rejected"]) == (7, 3)
    _, _, records = next(sender.store.iter_batches(cid))
    assert "to: invalid" in records[0].error


@pytest.mark.parametrize("failure", ["500-after-accept", "timeout-after-accept"])
def test_an_accepted_batch_whose_answer_is_lost_is_reconciled_not_resent(
        sender: SendContext, fake: FakeInstasent, failure: str) -> None:
    fake.script = [failure]
    cid = create(sender, messages(50))
    assert drive(sender, cid, 0) == ["unknown", "done"]
    assert sender.store.get(cid).counts["sent"] == 50
    assert set(fake.accepted.values()) == {1}
    assert fake.bulk_requests == 1 and fake.list_requests >= 1


def test_items_missing_from_the_answer_become_unknown_then_are_found(
        sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["drop-half"]
    cid = create(sender, messages(20))
    assert drive(sender, cid, 0) == ["unknown", "done"]
    assert sender.store.get(cid).counts["sent"] == 20
    assert set(fake.accepted.values()) == {1}


def test_a_worker_killed_mid_post_leaves_a_batch_that_is_reconciled_after_its_lease(
        sender: SendContext, fake: FakeInstasent) -> None:
    cid = create(sender, messages(30))
    # The dead worker claimed the batch and its POST went through; then it died before recording.
    claim = sender.ops.claim(cid, 0, lease_s=0.0)
    assert claim.claimed
    fake.handler(httpx.Request("POST", "http://instasent.test/sms/bulk", content=orjson.dumps(
        [{"from": "A", "to": f"+3460000{i:04d}", "text": "x", "clientId": f"{cid}-0-{i}"} for i in range(30)])))
    assert drive(sender, cid, 0) == ["done"]
    assert sender.store.get(cid).counts["sent"] == 30
    assert set(fake.accepted.values()) == {1}
    assert fake.list_requests == 1


def test_a_batch_held_by_a_live_worker_is_left_alone(sender: SendContext) -> None:
    cid = create(sender, messages(5))
    assert sender.ops.claim(cid, 0, lease_s=60).claimed
    outcome = send_batch(sender, cid, 0)
    assert outcome.action == "busy" and outcome.retry_in is not None and outcome.retry_in > 50


def test_connection_errors_are_retried_then_the_batch_is_failed(
        sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["connect"] * 3
    cid = create(sender, messages(10))
    assert drive(sender, cid, 0) == ["retry", "retry", "failed"]
    info = sender.store.get(cid)
    counts = info.counts
    assert counts["failed"] == 10 and counts["pending"] == 0
    # Its only batch has settled, so the campaign is over; nothing reached Instasent.
    assert (info.state, info.settled, counts["sent"], counts["unknown"]) == ("completed", 1, 0, 0)
    assert fake.accepted == {}
    assert fake.list_requests == 0  # nothing could have been sent, so nothing needed asking
    _, _, records = next(sender.store.iter_batches(cid))
    assert all("could not be reached" in r.error for r in records.values())


def test_a_transient_error_then_success_sends_once(
        sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["connect"]
    cid = create(sender, messages(10))
    assert drive(sender, cid, 0) == ["retry", "done"]
    assert sender.store.get(cid).counts["sent"] == 10


def test_a_429_pauses_the_lane_and_does_not_count_as_an_attempt(
        sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["429", "429", "429", "429"]
    cid = create(sender, messages(10))
    first = send_batch(sender, cid, 0)
    assert first.action == "rate_limited"
    assert sender.limiter.paused_for(sender.bulk_lane) > 0  # until the reset Instasent gave
    # More 429s than max_attempts (3), yet the batch is sent: none of them counted as an attempt.
    assert [first.action, *drive(sender, cid, 0)] == ["rate_limited"] * 4 + ["done"]
    assert sender.store.get(cid).counts["sent"] == 10
    assert fake.throttled["bulk"] == 4 and fake.bulk_requests == 5
    _, _, records = next(sender.store.iter_batches(cid))
    assert {r.attempts for r in records.values()} == {1}


def test_a_413_splits_the_batch(
        sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["413", "413", "413"]
    cid = create(sender, messages(40))
    assert drive(sender, cid, 0) == ["done"]
    assert sender.store.get(cid).counts["sent"] == 40


def test_a_402_pauses_the_campaign_for_insufficient_funds(
        sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["402"]
    cid = create(sender, messages(10))
    assert drive(sender, cid, 0) == ["paused"]
    info = sender.store.get(cid)
    assert (info.state, info.reason, info.counts["pending"]) == ("paused", "insufficient_funds", 10)


def test_a_401_fails_the_campaign_as_a_configuration_error(
        sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["401"]
    cid = create(sender, messages(10))
    drive(sender, cid, 0)
    info = sender.store.get(cid)
    assert info.state == "failed" and "configuration" in info.reason and "t" not in info.reason.split()


def test_consecutive_failed_batches_pause_the_campaign(
        sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["connect"] * 6
    cid = create(sender, messages(300))
    drive(sender, cid, 0)
    drive(sender, cid, 1)
    info = sender.store.get(cid)
    assert (info.state, info.reason) == ("paused", "consecutive_failures")
    assert send_batch(sender, cid, 2).action == "skip"


def test_settling_a_batch_reserves_the_next_ones_for_the_queue(sender: SendContext) -> None:
    cid = create(sender, messages(1000), window=2)
    outcome = send_batch(sender, cid, 0)
    assert outcome.enqueue == [2]
    again = send_batch(sender, cid, 0)  # a redelivered task re-enqueues only what nobody started
    assert (again.action, again.enqueue) == ("done", [2])
    send_batch(sender, cid, 2)
    assert send_batch(sender, cid, 0).enqueue == []


def test_a_completed_campaign_counts_every_message_once(sender: SendContext) -> None:
    cid = create(sender, messages(250, bad=5), window=10)
    for n in range(3):
        drive(sender, cid, n)
        drive(sender, cid, n)  # duplicates change nothing
    info = sender.store.get(cid)
    assert info.state == "completed"
    assert info.counts["sent"] + info.counts["rejected"] == 250 and info.counts["pending"] == 0


# -- the promises the mutation audit found unguarded ------------------------------------------------

def other_worker(sender: SendContext, fake: FakeInstasent) -> SendContext:
    """A second worker process's sender: its own Redis connection and HTTP client, the same Instasent."""
    connection = redis.Redis(connection_pool=sender.store.redis.connection_pool)
    keys = sender.store.keys
    client = loopback_client(sender.settings.instasent_base_url)
    return SendContext(settings=sender.settings, client=client, store=CampaignStore(connection, keys),
                  ops=BatchOps(connection, keys), limiter=RateLimiter(connection, keys), clock=sender.clock)


def client_ids(cid: str, batch: int, indexes: range) -> list[str]:
    return [f"{cid}-{batch}-{i}" for i in indexes]


def die_mid_post(sender: SendContext, fake: FakeInstasent, cid: str, n: int, accepted: range) -> None:
    """A worker claims batch ``n``, Instasent accepts ``accepted`` of it, the worker dies unrecorded."""
    assert sender.ops.claim(cid, n, lease_s=0.0).claimed
    fake.accept_directly(client_ids(cid, n, accepted))


def lose_the_answer(sender: SendContext, fake: FakeInstasent, cid: str, n: int, accepted: range) -> None:
    """A POST of batch ``n`` times out after Instasent accepted ``accepted`` of it."""
    fake.script = [f"timeout-after-accept:{len(accepted)}"]
    assert send_batch(sender, cid, n).action == "unknown"


def assert_within_limit(times: list[float], per_minute: int) -> None:
    """In every 60 s window, at most ``per_minute`` requests."""
    stamps = sorted(times)
    worst = max((sum(1 for t in stamps if start <= t < start + 60.0) for start in stamps), default=0)
    assert worst <= per_minute, f"{worst} requests in one 60 s window, over the limit of {per_minute}"


@pytest.mark.parametrize("uncertainty", [die_mid_post, lose_the_answer])
def test_a_cancelled_campaigns_uncertain_batch_is_reconciled_never_resent_and_every_message_ends_final(
        sender: SendContext, fake: FakeInstasent, uncertainty: Callable[..., None]) -> None:
    cid = create(sender, messages(20))
    uncertainty(sender, fake, cid, 0, range(12))  # Instasent has 12 of the 20
    posts = fake.bulk_requests
    assert campaigns.cancel(sender.store, sender.ops, cid, ttl_s=3600) == 0  # nobody is sending... nothing idle
    assert drive(sender, cid, 0) == ["done"]
    info = sender.store.get(cid)
    assert fake.bulk_requests == posts, "a cancelled campaign sent a message"
    assert (info.counts["sent"], info.counts["cancelled"]) == (12, 8)
    assert (info.counts["unknown"], info.counts["pending"]) == (0, 0)
    _, _, records = next(sender.store.iter_batches(cid))
    assert [records[i].status for i in range(20)] == ["sent"] * 12 + ["cancelled"] * 8


def test_a_cancel_reconcile_whose_claim_was_taken_over_meanwhile_still_ends_every_message_final(
        sender: SendContext, fake: FakeInstasent) -> None:
    cid = create(sender, messages(20))
    die_mid_post(sender, fake, cid, 0, range(12))  # Instasent has 12 of the 20
    assert campaigns.cancel(sender.store, sender.ops, cid, ttl_s=3600) == 0

    def take_over() -> None:  # our lease runs out during the search's last page; another worker claims it
        if fake.list_requests == 2:
            sender.store.redis.hset(sender.ops.keys.batch(cid, 0), "lease", 0)
            assert sender.ops.claim(cid, 0, lease_s=60).claimed

    fake.on_list = take_over
    assert send_batch(sender, cid, 0).action == "stale"
    # A stale holder may still add final records: the proof it found (sent) and the cancellation.
    info = sender.store.get(cid)
    assert fake.bulk_requests == 0, "a cancelled campaign sent a message"
    assert (info.counts["sent"], info.counts["cancelled"], info.counts["unknown"], info.counts["pending"]) == (
        12, 8, 0, 0)


def test_an_already_used_answer_to_a_resend_counts_as_sent_not_rejected(
        sender: SendContext, fake: FakeInstasent) -> None:
    # The answer is lost and Instasent's listing lags, so reconciling cannot see the messages: the
    # batch is sent again, and Instasent answers "clientId already used" for every message.
    fake.script, fake.list_lag = ["timeout-after-accept"], 1
    cid = create(sender, messages(10))
    assert drive(sender, cid, 0) == ["unknown", "done"]
    assert set(fake.posted.values()) == {2}  # the resend did happen...
    info = sender.store.get(cid)
    assert (info.counts["sent"], info.counts["rejected"], info.state) == (10, 0, "completed")  # ...and proved sent
    _, _, records = next(sender.store.iter_batches(cid))
    assert {r.status for r in records.values()} == {"sent"} and not any(r.error for r in records.values())


@pytest.mark.parametrize("list_failure", ["connect", "500"])
@pytest.mark.parametrize("uncertainty", [die_mid_post, lose_the_answer])
def test_giving_up_on_an_uncertain_batch_leaves_its_messages_unknown_for_reconcile_not_failed(
        sender: SendContext, fake: FakeInstasent, uncertainty: Callable[..., None], list_failure: str) -> None:
    cid = create(sender, messages(10))
    uncertainty(sender, fake, cid, 0, range(10))
    fake.list_script = [list_failure] * 3  # Instasent cannot be asked until every attempt is spent
    drive(sender, cid, 0)
    info = sender.store.get(cid)
    assert (info.counts["unknown"], info.counts["failed"], info.counts["sent"]) == (10, 0, 0)
    # Each record names the POST that may have taken its message (att + 1 when it was written): the
    # failed GETs add none, and an unknown record is never rewritten, not even after a 500 on GET /sms.
    assert {a for _, a, _ in ledger_of(sender, cid).values()} == {1}
    # ...so `dispatcher reconcile` can still find them, and sends none of them again.
    queue = Queue()
    assert reconcile(sender.store, sender.ops, DeliveryBook(sender.store.redis, sender.store.keys), queue, cid,
                     grace_s=0).batches == [0]
    posts = dict(fake.posted)
    assert queue.items == [(cid, 0)]
    drive(sender, cid, 0)
    info = sender.store.get(cid)
    assert (info.counts["sent"], info.counts["unknown"], info.counts["failed"]) == (10, 0, 0)
    assert dict(fake.posted) == posts
    assert (info.settled, info.state) == (1, "completed")  # settled once, though given up and reopened


def test_a_retry_posts_only_the_messages_without_a_final_record(
        sender: SendContext, fake: FakeInstasent) -> None:
    # A 413 splits the batch; the first half is accepted, the second half cannot connect.
    fake.script = ["413", "ok", "connect"]
    cid = create(sender, messages(40, bad=3))
    assert drive(sender, cid, 0) == ["retry", "done"]
    assert fake.posted == {c: 1 for c in client_ids(cid, 0, range(40))}, "a message was POSTed twice"
    info = sender.store.get(cid)
    assert (info.counts["sent"], info.counts["rejected"], info.state) == (37, 3, "completed")


def test_an_expired_campaign_first_reconciles_what_may_have_been_sent(
        sender: SendContext, fake: FakeInstasent) -> None:
    clock = Clock(1_800_000_000.0)
    sender.clock = clock
    cid = sender.store.create("x", messages(10), window=4, expires_at=clock.now + 60)
    sender.ops.reserve(cid)
    lose_the_answer(sender, fake, cid, 0, range(6))
    clock.now += 120  # the campaign expires before the outcome is known
    assert drive(sender, cid, 0) == ["expired"]
    info = sender.store.get(cid)
    assert (info.counts["sent"], info.counts["expired"], info.counts["unknown"]) == (6, 4, 0)
    assert fake.bulk_requests == 1


def test_a_batch_whose_window_never_opens_is_reconciled_before_its_messages_expire(
        sender: SendContext, fake: FakeInstasent) -> None:
    # 09:00-10:00 in Madrid and in Tokyo never overlap: the batch can only expire. A worker died
    # holding it, and Instasent has 6 of its messages (however they got there, they were sent).
    cid = sender.store.create("x", messages(10), window=4, send_window=Window9to10,
                              zones=["Asia/Tokyo,Europe/Madrid"] * 10)
    sender.ops.reserve(cid)
    die_mid_post(sender, fake, cid, 0, range(6))
    assert drive(sender, cid, 0) == ["expired"]
    info = sender.store.get(cid)
    assert (info.counts["sent"], info.counts["expired"], info.counts["unknown"]) == (6, 4, 0)
    assert fake.bulk_requests == 0


@pytest.mark.parametrize("reset_only", [False, True], ids=["with-every-header", "with-only-the-reset"])
def test_a_429_pauses_the_lane_for_every_worker_until_its_reset(sender: SendContext, fake: FakeInstasent,
                                                                reset_only: bool) -> None:
    fake.script, fake.throttle_s, fake.throttle_reset_only = ["429"], 30.0, reset_only
    cid = create(sender, messages(200))
    first = send_batch(sender, cid, 0)
    assert first.action == "rate_limited" and first.retry_in is not None and first.retry_in > 20
    # Another worker, with batch 1, waits for the reset instead of asking Instasent again.
    other = send_batch(other_worker(sender, fake), cid, 1)
    assert other.action == "rate_limited" and other.retry_in is not None and other.retry_in > 20
    assert fake.bulk_requests == 1
    assert sender.store.get(cid).counts["pending"] == 200


def test_a_429_on_the_list_endpoint_pauses_reconciling_for_every_worker(
        sender: SendContext, fake: FakeInstasent) -> None:
    fake.list_script, fake.throttle_s = ["429"], 30.0
    cid = create(sender, messages(200))
    die_mid_post(sender, fake, cid, 0, range(100))
    die_mid_post(sender, fake, cid, 1, range(100))
    first = send_batch(sender, cid, 0)
    assert first.action == "rate_limited" and first.retry_in is not None and first.retry_in > 20
    other = send_batch(other_worker(sender, fake), cid, 1)
    assert other.action == "rate_limited" and other.retry_in is not None and other.retry_in > 20
    assert (fake.list_requests, fake.bulk_requests) == (1, 0)


def test_a_response_with_no_requests_remaining_pauses_the_lane_before_any_429(
        sender: SendContext, fake: FakeInstasent) -> None:
    fake.bulk_window = Window(limit=2)
    cid = create(sender, messages(300))
    assert [send_batch(sender, cid, n).action for n in (0, 1)] == ["done", "done"]
    third = send_batch(other_worker(sender, fake), cid, 2)
    assert third.action == "rate_limited" and third.retry_in is not None and third.retry_in > 30
    assert fake.throttled["bulk"] == 0, "Instasent had to answer 429"
    assert_within_limit(fake.request_times["bulk"], 2)
    assert sender.store.get(cid).counts["sent"] == 200


def test_reconciling_waits_for_the_list_endpoints_rate_limit(
        sender: SendContext, fake: FakeInstasent) -> None:
    sender.settings = sender.settings.with_overrides(rate_limit_per_min=1)
    fake.list_window = Window(limit=1)
    cid = create(sender, messages(200))
    die_mid_post(sender, fake, cid, 0, range(100))
    die_mid_post(sender, fake, cid, 1, range(100))
    assert send_batch(sender, cid, 0).action == "done"  # found by one GET /sms
    second = send_batch(other_worker(sender, fake), cid, 1)
    assert second.action == "rate_limited" and second.retry_in is not None and second.retry_in > 30
    assert fake.throttled["list"] == 0 and fake.list_requests == 1
    assert_within_limit(fake.request_times["list"], 1)
    assert fake.bulk_requests == 0


def test_every_page_of_a_reconciling_search_takes_its_own_list_slot(
        sender: SendContext, fake: FakeInstasent) -> None:
    sender.settings = sender.settings.with_overrides(rate_limit_per_min=1)
    fake.list_window = Window(limit=1)
    cid = create(sender, messages(100))
    die_mid_post(sender, fake, cid, 0, range(50))  # half accepted: proving the rest unsent takes 2 pages
    outcome = send_batch(sender, cid, 0)
    assert outcome.action == "rate_limited" and outcome.retry_in is not None and outcome.retry_in > 30
    assert fake.throttled["list"] == 0 and fake.list_requests == 1
    assert_within_limit(fake.request_times["list"], 1)
    assert fake.bulk_requests == 0  # nothing concluded, nothing resent


def test_backoff_doubles_per_failure_with_jitter_and_stops_at_its_cap() -> None:
    for fails, full in ((0, 1.0), (1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 20.0), (40, 20.0)):
        delays = [backoff(fails, 1.0, 20.0) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays), (fails, min(delays), max(delays))
        assert max(delays) - min(delays) > full / 4  # jittered, not fixed


# -- what each outcome tells: the summary (shown in Flower) and every message's record ----------------

def ledger_of(sender: SendContext, cid: str, n: int = 0) -> dict[int, tuple[str, int, str]]:
    records = dict(list(sender.store.iter_batches(cid))[n][2])
    return {i: (r.status, r.attempts, r.detail) for i, r in sorted(records.items())}


def summary(**counts: object) -> dict[str, object]:
    return {"batch": 0, "attempt": 1, "accepted": 0, "rejected": 0, "reconciled": 0, "unknown": 0, "failed": 0,
            **counts}


def test_a_batch_with_rejections_reports_each_message_and_a_summary(sender: SendContext) -> None:
    cid = create(sender, messages(5, bad=2))
    outcome = send_batch(sender, cid, 0)
    assert outcome.summary == summary(accepted=3, rejected=2, action="done")
    assert ledger_of(sender, cid) == {0: ("rejected", 1, "to: invalid"), 1: ("rejected", 1, "to: invalid"),
                                      **{i: ("sent", 1, f"id-{cid}-0-{i}") for i in range(2, 5)}}


def test_messages_missing_from_the_answer_are_recorded_unknown_then_sent_by_the_post_that_took_them(
        sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["drop-half"]
    cid = create(sender, messages(4))
    first = send_batch(sender, cid, 0)
    # Items missing from the answer make a failed attempt (issue 11), so the outcome names why.
    assert first.summary == summary(accepted=2, unknown=2, action="unknown", error="missing from Instasent's answer")
    assert first.retry_in == sender.settings.reconcile_delay_s
    assert ledger_of(sender, cid)[3] == ("unknown", 1, "missing from Instasent's answer")
    second = send_batch(sender, cid, 0)
    assert second.summary == summary(attempt=2, reconciled=2, action="done")
    assert ledger_of(sender, cid) == {i: ("sent", 1, f"id-{cid}-0-{i}") for i in range(4)}


def test_an_already_used_answer_records_the_resend_that_proved_it(
        sender: SendContext, fake: FakeInstasent) -> None:
    fake.script, fake.list_lag = ["timeout-after-accept"], 1
    cid = create(sender, messages(3))
    first = send_batch(sender, cid, 0)
    assert first.summary == summary(unknown=3, action="unknown", error=first.summary["error"])
    assert "did not answer POST /sms/bulk" in str(first.summary["error"])
    assert ledger_of(sender, cid)[0] == ("unknown", 1, first.summary["error"])
    second = send_batch(sender, cid, 0)
    assert second.summary == summary(attempt=2, reconciled=3, action="done")
    assert ledger_of(sender, cid) == {i: ("sent", 2, "") for i in range(3)}


def test_failed_messages_carry_the_error_and_the_attempt(
        sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["connect"] * 3
    cid = create(sender, messages(2))
    outcomes = [send_batch(sender, cid, 0) for _ in range(3)]
    error = "Instasent could not be reached for POST /sms/bulk (ConnectError); nothing was sent."
    assert [o.summary for o in outcomes] == [summary(action="retry", error=error)] * 2 + [
        summary(failed=2, action="failed", error=error)]
    assert [o.retry_in is None for o in outcomes] == [False, False, True]
    assert ledger_of(sender, cid) == {0: ("failed", 1, error), 1: ("failed", 1, error)}


def test_a_batch_given_up_with_unknown_outcome_keeps_them_unknown_with_the_error(
        sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["500-after-accept:0"] * 3  # Instasent failed every time, before taking anything
    cid = create(sender, messages(2))
    actions = drive(sender, cid, 0)
    assert actions == ["unknown"] * 3
    info = sender.store.get(cid)
    assert (info.counts["unknown"], info.settled, info.state) == (2, 1, "completed")
    status, attempts, detail = ledger_of(sender, cid)[0]
    assert (status, attempts) == ("unknown", 3) and "failed on POST /sms/bulk (500): boom" in detail


def test_a_batch_that_gets_through_resets_the_failure_streak(
        sender: SendContext, fake: FakeInstasent) -> None:
    # Two failed batches in a row pause the campaign (max_consecutive_failures=2), but not when a
    # good one comes between them.
    fake.script = ["connect"] * 3 + ["ok"] + ["connect"] * 3
    cid = create(sender, messages(400))
    for n in range(3):
        drive(sender, cid, n)
    info = sender.store.get(cid)
    assert (info.state, info.counts["failed"], info.counts["sent"]) == ("running", 200, 100)


def test_batches_given_up_with_unknown_outcomes_count_as_failures_in_a_row(
        sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["500-after-accept:0"] * 6
    cid = create(sender, messages(300))
    drive(sender, cid, 0)
    drive(sender, cid, 1)
    info = sender.store.get(cid)
    assert (info.state, info.reason) == ("paused", "consecutive_failures")


def test_expired_suppressed_and_cancelled_messages_say_why(sender: SendContext, fake: FakeInstasent,
                                                          redis_client: redis.Redis) -> None:
    clock = Clock(1_800_000_000.0)
    sender.clock = clock
    cid = sender.store.create("x", messages(3), window=4, expires_at=clock.now + 60)
    sender.ops.reserve(cid)
    lose_the_answer(sender, fake, cid, 0, range(1))
    clock.now += 120
    outcome = send_batch(sender, cid, 0)
    assert outcome.summary == summary(attempt=2, reconciled=1, expired=2, action="expired")
    late = ("expired", 1, "expired before it could be sent")
    assert ledger_of(sender, cid) == {0: ("sent", 1, f"id-{cid}-0-0"), 1: late, 2: late}
    third = create(sender, messages(2))
    lose_the_answer(sender, fake, third, 0, range(1))
    campaigns.cancel(sender.store, sender.ops, third, ttl_s=60)
    assert send_batch(sender, third, 0).summary == summary(attempt=2, reconciled=1, action="done")
    assert ledger_of(sender, third) == {0: ("sent", 1, f"id-{third}-0-0"), 1: ("cancelled", 1, "cancelled")}
    other = create(sender, messages(2))
    SuppressionList(redis_client, sender.store.keys).add(["+34600000000"])  # message 0's number
    assert send_batch(sender, other, 0).summary == summary(accepted=1, suppressed=1, action="done")
    assert ledger_of(sender, other)[0] == ("suppressed", 0, "opted out")


# -- slots, pauses and notes: what the batch algorithm promises beyond the final states ---------------

def slow_lanes(sender: SendContext) -> None:
    """Two requests a second per lane, and no waiting for a slot: a taken slot means come back later."""
    sender.settings = sender.settings.with_overrides(rate_limit_per_min=120, max_slot_wait_s=0.0)


def test_a_batch_never_posts_without_a_slot_however_short_the_wait(
        sender: SendContext, fake: FakeInstasent) -> None:
    slow_lanes(sender)
    cid = create(sender, messages(10))
    assert sender.limiter.try_acquire(sender.bulk_lane) == 0.0  # another worker just took the slot
    outcome = send_batch(sender, cid, 0)
    assert outcome.action == "rate_limited" and outcome.retry_in is not None and 0 < outcome.retry_in <= 0.6
    assert (fake.bulk_requests, fake.list_requests) == (0, 0)
    assert sender.store.get(cid).counts["pending"] == 10


@pytest.mark.parametrize("never_opens", [False, True], ids=["to-send", "to-expire"])
def test_reconciling_never_lists_without_a_slot_however_short_the_wait(
        sender: SendContext, fake: FakeInstasent, never_opens: bool) -> None:
    slow_lanes(sender)
    if never_opens:
        cid = sender.store.create("x", messages(10), window=4, send_window=Window9to10,
                                  zones=["Asia/Tokyo,Europe/Madrid"] * 10)
        sender.ops.reserve(cid)
    else:
        cid = create(sender, messages(10))
    die_mid_post(sender, fake, cid, 0, range(4))
    assert sender.limiter.try_acquire(sender.list_lane) == 0.0
    outcome = send_batch(sender, cid, 0)
    assert outcome.action == "rate_limited" and outcome.retry_in is not None and 0 < outcome.retry_in <= 0.6
    assert (fake.bulk_requests, fake.list_requests) == (0, 0)
    assert sender.ops.claim(cid, 0, lease_s=60).must_reconcile  # still to be asked first
    assert sender.store.get(cid).counts["expired"] == 0


def test_messages_a_reconcile_proved_unsent_are_pending_again_before_they_are_resent(
        sender: SendContext, fake: FakeInstasent) -> None:
    slow_lanes(sender)
    sender.settings = sender.settings.with_overrides(max_slot_wait_s=1.0)  # each search page waits its slot
    cid = create(sender, messages(3))
    lose_the_answer(sender, fake, cid, 0, range(1))
    sender.limiter.pause_until(sender.bulk_lane, clock.time() + 60)  # and no resend may start yet
    outcome = send_batch(sender, cid, 0)
    # One search: the page that finds message 0, then the empty page that proves 1 and 2 absent.
    assert outcome.action == "rate_limited" and fake.list_requests == 2
    assert_within_limit(fake.request_times["list"], 120)
    counts = sender.store.get(cid).counts
    assert (counts["sent"], counts["unknown"], counts["pending"]) == (1, 0, 2)
    assert not sender.ops.claim(cid, 0, lease_s=0).must_reconcile  # no need to ask Instasent again


def test_a_message_rate_counts_every_message_of_the_batch(
        sender: SendContext, fake: FakeInstasent) -> None:
    sender.settings = sender.settings.with_overrides(message_rate_per_s=100.0)
    cid = create(sender, messages(50))
    assert send_batch(sender, cid, 0).action == "done"
    assert 0.3 < sender.limiter.try_acquire(sender.bulk_lane, 1) <= 0.5  # 50 messages at 100/s


def test_a_429_says_when_to_come_back_and_why(
        sender: SendContext, fake: FakeInstasent) -> None:
    fake.script, fake.throttle_s = ["429"], 30.0
    cid = create(sender, messages(10))
    outcome = send_batch(sender, cid, 0)
    assert outcome.retry_in is not None and 25 < outcome.retry_in <= 30.01  # the reset, to the millisecond
    assert "rate limit for POST /sms/bulk is reached" in str(outcome.summary["error"])


def test_a_429_without_a_reset_time_pauses_the_lane_for_about_a_second(sender: SendContext, serve: Serve) -> None:
    def throttled(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429)

    sender.client = serve(throttled)
    cid = create(sender, messages(10))
    outcome = send_batch(sender, cid, 0)
    assert outcome.action == "rate_limited" and outcome.retry_in is not None and 0.5 < outcome.retry_in <= 1.0
    assert 0.0 < sender.limiter.paused_for(sender.bulk_lane) <= 1.0


def test_a_429_after_reconciling_pauses_the_bulk_lane_not_the_list_lane(
        sender: SendContext, fake: FakeInstasent) -> None:
    fake.script, fake.throttle_s = ["429"], 30.0
    cid = create(sender, messages(10))
    die_mid_post(sender, fake, cid, 0, range(6))
    assert send_batch(sender, cid, 0).action == "rate_limited"
    assert sender.limiter.paused_for(sender.bulk_lane) > 20 and sender.limiter.paused_for(sender.list_lane) == 0.0
    assert sender.store.get(cid).counts["sent"] == 6


def test_a_clean_batch_never_asks_instasent_what_it_has(
        sender: SendContext, fake: FakeInstasent) -> None:
    cid = create(sender, messages(10))
    assert drive(sender, cid, 0) == ["done"]
    assert fake.list_requests == 0


def test_an_unknown_outcome_also_resets_the_failure_streak(
        sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["connect"] * 3 + ["drop-half"] + ["connect"] * 3
    cid = create(sender, messages(400))
    for n in range(3):
        drive(sender, cid, n)
    assert sender.store.get(cid).state == "running"


def test_configuration_and_funds_errors_are_named_in_the_outcome(
        sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["402"]
    paused = send_batch(sender, create(sender, messages(10)), 0)
    assert paused.action == "paused" and "balance is too low" in str(paused.summary["error"])
    fake.script = ["401"]
    failed = send_batch(sender, create(sender, messages(10)), 0)
    assert failed.action == "failed" and "refused the token" in str(failed.summary["error"])
    assert failed.campaign_state == "running"  # recorded before the campaign was marked failed


def test_a_campaign_expires_at_its_expiry_instant(
        sender: SendContext, fake: FakeInstasent) -> None:
    clock = Clock(1_800_000_000.0)
    sender.clock = clock
    cid = sender.store.create("x", messages(2), window=4, expires_at=clock.now)
    sender.ops.reserve(cid)
    assert send_batch(sender, cid, 0).action == "expired" and fake.bulk_requests == 0


def test_outcomes_that_send_nothing_say_why(sender: SendContext) -> None:
    cid = create(sender, messages(300), window=1)
    assert send_batch(sender, cid, 0).action == "done"
    assert send_batch(sender, cid, 0).summary == {"batch": 0, "note": "already done"}
    sender.ops.claim(cid, 1, lease_s=60)
    assert send_batch(sender, cid, 1).summary == {"batch": 1, "note": "held by a worker"}
    sender.store.transition(cid, State.PAUSED, "by hand")
    skipped = send_batch(sender, cid, 2)
    assert (skipped.summary, skipped.campaign_state) == ({"batch": 2, "note": "campaign paused"}, "paused")
    # A campaign this Redis never listed was lost with its data (issue 11): the task says so, visibly.
    lost = send_batch(sender, "nosuchcampaign", 0)
    assert (lost.action, lost.summary) == ("lost", {"batch": 0, "note": "campaign lost from Redis"})


def test_a_closed_window_parks_the_batch_and_an_unknown_one_stays_to_be_reconciled(
        sender: SendContext, fake: FakeInstasent) -> None:
    clock = Clock()
    sender.clock = clock
    clock.at(8, 30)  # 09:30 in Madrid: open
    cid = sender.store.create("x", messages(3), window=4, send_window=SendWindow(time(9), time(10)),
                              zones=["Europe/Madrid"] * 3)
    sender.ops.reserve(cid)
    lose_the_answer(sender, fake, cid, 0, range(3))
    clock.at(10, 0)  # 11:00 in Madrid: closed
    outcome = send_batch(sender, cid, 0)
    assert outcome.action == "waiting" and outcome.summary["action"] == "waiting"
    assert str(outcome.summary["until"]).startswith("2026-11-24T08:00:00")
    clock.now = datetime(2026, 11, 24, 8, 0, tzinfo=UTC).timestamp()  # 09:00 in Madrid the next day
    assert send_batch(sender, cid, 0).action == "done"
    assert fake.bulk_requests == 1 and sender.store.get(cid).counts["sent"] == 3  # found, not resent


def test_a_number_suppressed_while_a_batch_was_uncertain_keeps_what_reconcile_found(
        sender: SendContext, fake: FakeInstasent, redis_client: redis.Redis) -> None:
    cid = create(sender, messages(3))
    lose_the_answer(sender, fake, cid, 0, range(1))
    SuppressionList(redis_client, sender.store.keys).add(["+34600000002"])
    assert send_batch(sender, cid, 0).action == "done"
    assert [s for s, _, _ in ledger_of(sender, cid).values()] == ["sent", "sent", "suppressed"]


def test_429s_do_not_bring_a_batch_closer_to_giving_up(
        sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["429", "429", "connect", "connect"]  # max_attempts is 3
    cid = create(sender, messages(10))
    assert drive(sender, cid, 0) == ["rate_limited", "rate_limited", "retry", "retry", "done"]
    assert sender.store.get(cid).counts["sent"] == 10


def test_a_failure_after_part_of_a_split_batch_went_through_keeps_what_went_through(
        sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["413", "ok", "500-after-accept:0"]
    cid = create(sender, messages(40))
    assert send_batch(sender, cid, 0).action == "unknown"
    counts = sender.store.get(cid).counts
    assert (counts["sent"], counts["unknown"]) == (20, 20)
    fake.script = ["connect", "connect", "413", "ok", "connect"]
    other = create(sender, messages(40))
    assert drive(sender, other, 0) == ["retry", "retry", "failed"]
    counts = sender.store.get(other).counts
    assert (counts["sent"], counts["failed"]) == (20, 20)


def test_an_outcome_error_is_cut_to_200_characters(sender: SendContext, serve: Serve) -> None:
    def broke(request: httpx.Request) -> httpx.Response:
        return httpx.Response(402, json={"message": "x" * 500})

    sender.client = serve(broke)
    outcome = send_batch(sender, create(sender, messages(10)), 0)
    assert len(outcome.summary["error"]) == 200


def test_a_402_for_a_campaign_cancelled_meanwhile_leaves_it_cancelled(sender: SendContext, serve: Serve) -> None:
    cid = create(sender, messages(10))

    def cancelled_then_402(request: httpx.Request) -> httpx.Response:
        sender.store.transition(cid, State.CANCELLED, "cancelled by user")  # while the POST was on its way
        return httpx.Response(402, json={"message": "Insufficient balance"})

    sender.client = serve(cancelled_then_402)
    assert send_batch(sender, cid, 0).action == "paused"
    info = sender.store.get(cid)
    assert (info.state, info.reason) == ("cancelled", "cancelled by user")
