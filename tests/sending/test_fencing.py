"""Fencing, reconciliation that proves absence, 413 items, split-chunk slots and the cancel race
(issue 11, items a, b, g, h and c), in process against real Redis and a scripted Instasent."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pandas as pd
import pytest

from dispatcher.errors import ConfigurationError, OutcomeUnknown
from dispatcher.instasent.client import InstasentClient
from dispatcher.instasent.models import SmsItem
from dispatcher.instasent.wire import SMS_BULK
from dispatcher.schema.names import BatchState
from dispatcher.sending import campaigns, ledger
from dispatcher.sending.attempt import send_batch
from dispatcher.sending.context import SendContext
from dispatcher.sending.outcome import Action
from dispatcher.sending.ratelimit import Lane, RateLimiter
from dispatcher.settings import Settings
from tests.fakes import TOO_LARGE, FakeInstasent


def messages(n: int, to: dict[int, str] | None = None) -> pd.DataFrame:
    numbers = [f"+3460000{i:04d}" for i in range(n)]
    for i, number in (to or {}).items():
        numbers[i] = number
    return pd.DataFrame({"row": range(2, n + 2), "to": numbers, "text": ["hola"] * n, "sender": ["ACME"] * n,
                         "parts": [1] * n, "unicode": [False] * n, "price": [0.05] * n, "country": ["ES"] * n})


def create(sender: SendContext, frame: pd.DataFrame) -> str:
    campaign_id = sender.store.create("test", frame, window=4)
    sender.ops.reserve(campaign_id)
    return campaign_id


def drive(sender: SendContext, campaign_id: str, n: int = 0, max_runs: int = 30) -> list[str]:
    actions = []
    for _ in range(max_runs):
        outcome = send_batch(sender, campaign_id, n)
        actions.append(outcome.action.value)
        if outcome.retry_in is None:
            return actions
    raise AssertionError(f"batch {n} never settled: {actions}")


class HookedLimiter(RateLimiter):
    """A real limiter that runs ``hook`` whenever a bulk slot is asked for, and counts the asks."""

    def __init__(self, limiter: RateLimiter, hook: Callable[[], None] = lambda: None) -> None:
        self.__dict__.update(limiter.__dict__)
        self.hook = hook
        self.bulk_asks = 0

    def acquire(self, lane: Lane, messages: int = 1, max_wait_s: float = 10.0) -> float:
        if lane.name == SMS_BULK:
            self.bulk_asks += 1
            self.hook()
        return super().acquire(lane, messages, max_wait_s)


def hook_limiter(sender: SendContext, hook: Callable[[], None] = lambda: None) -> HookedLimiter:
    sender.limiter = HookedLimiter(sender.limiter, hook)
    return sender.limiter


# -- (a) fencing ------------------------------------------------------------------------------------
def test_a_stale_holder_cannot_reset_a_batch_that_another_worker_holds(sender: SendContext) -> None:
    campaign_id = create(sender, messages(3))
    stale = sender.ops.claim(campaign_id, 0, lease_s=0)
    current = sender.ops.claim(campaign_id, 0, lease_s=60)
    assert stale.claimed and current.claimed and stale.token != current.token
    recorded = sender.ops.record(campaign_id, 0, [(0, ledger.encode("sent", 1, "id0")), (1, "-"),
                                                  (2, ledger.encode("unknown", 1))], token=stale.token)
    assert recorded.stale
    # Only the terminal record went in; the batch is still in flight under the current claim.
    assert sender.store.batch_states(campaign_id, [0]) == ["i"]
    assert send_batch(sender, campaign_id, 0).action == Action.BUSY
    counts = sender.store.get(campaign_id).counts
    assert (counts["sent"], counts["unknown"]) == (1, 0)
    assert sender.ops.park(campaign_id, 0, time.time() + 60, unknown=False, token=stale.token)[1] == "stale"
    assert sender.ops.renew(campaign_id, 0, stale.token, 60) < 0
    assert not sender.ops.record(campaign_id, 0, [], token=current.token).stale


def test_one_record_call_applies_its_records_in_order_when_it_names_a_message_twice(sender: SendContext) -> None:
    campaign_id = create(sender, messages(3))
    first = sender.ops.claim(campaign_id, 0, lease_s=60)
    sender.ops.record(campaign_id, 0, [(0, ledger.encode("unknown", 1)), (1, ledger.encode("unknown", 1))],
                      token=first.token, otherwise=BatchState.UNKNOWN)
    again = sender.ops.claim(campaign_id, 0, lease_s=60)
    assert again.claimed and again.must_reconcile
    # Reconciled: 0 and 1 were not sent (back to pending), then 0 is sent and 2 rejected, in one call.
    reason = "to: not\na number"
    sender.ops.record(campaign_id, 0, [(0, "-"), (1, "-"), (0, ledger.encode("sent", 2, "ab" * 12)),
                                       (2, ledger.encode("rejected", 2, reason))], token=again.token)
    counts = sender.store.get(campaign_id).counts
    assert (counts["sent"], counts["rejected"], counts["unknown"], counts["pending"]) == (1, 1, 0, 1)
    stored = sender.store.redis.hgetall(sender.ops.keys.ledger(campaign_id, 0))
    assert sorted(stored) == [b"0", b"2"]
    assert ledger.decode(stored[b"0"]).status == "sent"
    assert ledger.decode(stored[b"2"]).detail == "to: not a number"  # no newline can split the records


def test_an_attempt_whose_batch_was_claimed_by_another_worker_stops_without_posting(
        sender: SendContext, fake: FakeInstasent) -> None:
    campaign_id = create(sender, messages(10))

    def take_over() -> None:  # our lease runs out mid-attempt and another worker claims the batch
        sender.store.redis.hset(sender.ops.keys.batch(campaign_id, 0), "lease", 0)
        assert sender.ops.claim(campaign_id, 0, lease_s=60).claimed

    hook_limiter(sender, take_over)
    outcome = send_batch(sender, campaign_id, 0)
    assert outcome.action == Action.STALE and outcome.retry_in is None
    assert fake.bulk_requests == 0
    assert sender.store.batch_states(campaign_id, [0]) == ["i"]


def test_an_attempt_with_too_little_lease_left_does_not_post(sender: SendContext, fake: FakeInstasent) -> None:
    campaign_id = create(sender, messages(10))
    hook_limiter(sender, lambda: sender.store.redis.hset(sender.ops.keys.batch(campaign_id, 0), "lease", 0))
    outcome = send_batch(sender, campaign_id, 0)
    assert outcome.action == Action.RETRY and fake.bulk_requests == 0
    assert sender.store.get(campaign_id).counts["pending"] == 10


def test_a_post_ends_by_its_deadline_even_when_the_server_keeps_answering_slowly(
        serve: Callable[[Callable[[httpx.Request], httpx.Response]], InstasentClient]) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        time.sleep(1.5)
        return httpx.Response(201, json={"entities": [], "errors": []})

    client = serve(slow)
    item = SmsItem(sender="A", to="+34600000000", text="x", client_id="c-0-0")
    with pytest.raises(OutcomeUnknown, match="deadline"):
        client.send_bulk([item], deadline=time.monotonic() + 0.2)
    client.close()


def test_settings_that_let_a_post_outlive_the_lease_are_refused_in_one_sentence() -> None:
    settings = Settings.from_env(environ={"DISPATCHER_BATCH_LEASE": "20", "DISPATCHER_READ_TIMEOUT": "30"},
                                 env_file=None)
    with pytest.raises(ConfigurationError, match=r"DISPATCHER_BATCH_LEASE \(20 s\) must exceed") as raised:
        settings.check_lease()
    assert str(raised.value).count(". ") == 0
    Settings.from_env(environ={}, env_file=None).check_lease()


# -- (b) reconciliation proves absence or waits --------------------------------------------------------
def test_an_incomplete_search_keeps_messages_unknown_and_sends_nothing(
        sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["timeout-after-accept"]
    campaign_id = create(sender, messages(10))
    assert send_batch(sender, campaign_id, 0).action == Action.UNKNOWN
    fake.accepted.clear()  # Instasent does not have them, but the search cannot prove it:
    fake.ignore_filter = True
    assert drive(sender, campaign_id) == ["unknown", "unknown"]  # max_attempts is 3: it gives up, unknown
    assert fake.bulk_requests == 1
    assert sender.store.get(campaign_id).counts["unknown"] == 10


def test_a_short_page_does_not_end_the_search(sandbox: Any, settings: Settings) -> None:
    client = InstasentClient.from_settings(settings)
    items = [SmsItem(sender="ACME", to=f"+3460000{i:04d}", text="x", client_id=f"short-{i}") for i in range(80)]
    client.send_bulk(items)
    client.send_bulk([SmsItem(sender="ACME", to="+34611111111", text="x", client_id="someone-else")])
    sandbox.faults(list_per_page_cap=30)
    search = client.search_client_ids([i.client_id for i in items])
    assert search.complete and len(search.found) == 80
    sandbox.faults(list_per_page_cap=0, ignore_client_id_filter_rate=1)
    search = client.search_client_ids([i.client_id for i in items] + ["never-sent"])
    assert not search.complete and "filter" in search.reason
    sandbox.faults(ignore_client_id_filter_rate=0)
    assert not client.search_client_ids(["never-sent"], max_pages=0).complete
    client.close()


def test_every_resend_after_items_go_missing_counts_against_max_attempts(
        sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["ignore-half"] * 20
    campaign_id = create(sender, messages(8))
    drive(sender, campaign_id)
    assert fake.bulk_requests <= sender.settings.max_attempts
    info = sender.store.get(campaign_id)
    assert info.counts["pending"] == 0 and info.counts["sent"] + info.counts["unknown"] + info.counts["failed"] == 8
    # Re-driven later (the watchdog), it resolves what it can and resends nothing.
    drive(sender, campaign_id)
    assert fake.bulk_requests <= sender.settings.max_attempts
    assert set(fake.accepted.values()) == {1}


# -- (g) 413 on a single item, slots for split chunks --------------------------------------------------
def test_an_item_too_large_on_its_own_is_rejected_and_the_rest_is_sent(sender: SendContext) -> None:
    campaign_id = create(sender, messages(40, to={7: TOO_LARGE}))
    assert drive(sender, campaign_id) == ["done"]
    info = sender.store.get(campaign_id)
    assert (info.counts["sent"], info.counts["rejected"], info.counts["failed"]) == (39, 1, 0)
    _, _, records = next(sender.store.iter_batches(campaign_id))
    assert records[7].status == "rejected" and "413" in records[7].error


def test_every_split_chunk_takes_a_rate_limit_slot(sender: SendContext, fake: FakeInstasent) -> None:
    fake.script = ["413", "413", "413"]
    limiter = hook_limiter(sender)
    campaign_id = create(sender, messages(40))
    assert drive(sender, campaign_id) == ["done"]
    assert fake.bulk_requests > 1 and limiter.bulk_asks == fake.bulk_requests


# -- (h) cancel race -----------------------------------------------------------------------------------
@pytest.mark.parametrize("step", ["429", "connect"])
def test_a_batch_in_flight_during_cancel_ends_cancelled_not_pending(
        sender: SendContext, fake: FakeInstasent, step: str) -> None:
    fake.script = [step]
    campaign_id = create(sender, messages(10))
    hook_limiter(sender, lambda: campaigns.cancel(sender.store, sender.ops, campaign_id, ttl_s=60))
    outcome = send_batch(sender, campaign_id, 0)
    info = sender.store.get(campaign_id)
    assert (info.state, info.counts["cancelled"], info.counts["pending"]) == ("cancelled", 10, 0)
    assert outcome.retry_in is None and fake.accepted == {}


# -- (c) parked batches leave their set only once published ----------------------------------------------
def test_parked_batches_stay_parked_until_their_tasks_are_published(sender: SendContext) -> None:
    campaign_id = create(sender, messages(10))
    claim = sender.ops.claim(campaign_id, 0, lease_s=60)
    sender.ops.park(campaign_id, 0, time.time() - 1, unknown=False, token=claim.token)

    class Down:
        def enqueue(self, campaign_id: str, numbers: Any) -> None:
            raise ConnectionError("broker away")

    with pytest.raises(ConnectionError):
        campaigns.release_parked(sender.ops, Down())
    assert sender.ops.due(time.time()) == [(campaign_id, 0)]

    class Up:
        def __init__(self) -> None:
            self.queued: list[tuple[str, list[int]]] = []

        def enqueue(self, campaign_id: str, numbers: Any) -> None:
            self.queued.append((campaign_id, list(numbers)))

    up = Up()
    assert campaigns.release_parked(sender.ops, up) == 1
    assert up.queued == [(campaign_id, [0])] and sender.ops.due(time.time()) == []
