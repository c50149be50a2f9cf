"""The batch algorithm, in process, against real Redis and a scripted Instasent (MockTransport).

Each test scripts what Instasent does with each request, then checks the one property that
matters: every message ends in exactly one recorded state and none is accepted twice.
"""

from __future__ import annotations

import httpx
import orjson
import pandas as pd
import pytest

from dispatcher.sending.attempt import SendContext, send_batch
from tests.fakes import FakeInstasent


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


def test_items_missing_from_the_answer_become_unknown_then_are_found(sender: SendContext, fake: FakeInstasent) -> None:
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


def test_connection_errors_are_retried_then_the_batch_is_failed(sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["connect"] * 3
    cid = create(sender, messages(10))
    assert drive(sender, cid, 0) == ["retry", "retry", "failed"]
    counts = sender.store.get(cid).counts
    assert counts["failed"] == 10 and counts["pending"] == 0


def test_a_transient_error_then_success_sends_once(sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["connect"]
    cid = create(sender, messages(10))
    assert drive(sender, cid, 0) == ["retry", "done"]
    assert sender.store.get(cid).counts["sent"] == 10


def test_a_429_pauses_the_lane_and_does_not_count_as_an_attempt(sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["429", "429", "429", "429"]
    cid = create(sender, messages(10))
    assert drive(sender, cid, 0) == ["rate_limited"] * 4 + ["done"]
    assert sender.store.get(cid).counts["sent"] == 10


def test_a_413_splits_the_batch(sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["413", "413", "413"]
    cid = create(sender, messages(40))
    assert drive(sender, cid, 0) == ["done"]
    assert sender.store.get(cid).counts["sent"] == 40


def test_a_402_pauses_the_campaign_for_insufficient_funds(sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["402"]
    cid = create(sender, messages(10))
    assert drive(sender, cid, 0) == ["paused"]
    info = sender.store.get(cid)
    assert (info.state, info.reason, info.counts["pending"]) == ("paused", "insufficient_funds", 10)


def test_a_401_fails_the_campaign_as_a_configuration_error(sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["401"]
    cid = create(sender, messages(10))
    drive(sender, cid, 0)
    info = sender.store.get(cid)
    assert info.state == "failed" and "configuration" in info.reason and "t" not in info.reason.split()


def test_consecutive_failed_batches_pause_the_campaign(sender: SendContext, fake: FakeInstasent) -> None:
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
