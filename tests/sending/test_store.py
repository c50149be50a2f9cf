"""The campaign store and lifecycle, against a real Redis server."""

from __future__ import annotations

import pandas as pd
import pytest
import redis

from dispatcher.errors import InputError, InvalidTransition
from dispatcher.keys import Keys
from dispatcher.sending import ledger
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.lifecycle import State, check_transition
from dispatcher.sending.store import CampaignStore


def frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"row": range(2, n + 2), "to": [f"+3460000{i:04d}" for i in range(n)],
                         "text": [f"Hola {i} ñ€" for i in range(n)], "sender": ["ACME"] * n, "parts": [1] * n,
                         "unicode": [False] * n, "price": [0.045] * n, "country": ["ES"] * n})


@pytest.fixture()
def store(redis_client: redis.Redis) -> CampaignStore:
    return CampaignStore(redis_client, Keys("dsptest"))


def test_a_new_campaign_is_queued_with_its_messages_in_batches_of_100(store: CampaignStore) -> None:
    cid = store.create("spring", frame(250), window=4, cost=11.25, currency="EUR")
    info = store.get(cid)
    assert (info.state, info.total, info.batches, info.counts["pending"]) == ("queued", 250, 3, 250)
    batches = list(store.iter_batches(cid))
    assert [len(m) for _, m, _ in batches] == [100, 100, 50]
    assert batches[2][1].text[0] == "Hola 200 ñ€" and batches[1][1].client_id(cid, 3) == f"{cid}-1-3"


def test_an_empty_campaign_completes_at_once(store: CampaignStore) -> None:
    cid = store.create("empty", frame(0), window=4)
    assert store.get(cid).state == "completed"


def test_an_unknown_campaign_id_is_a_plain_error(store: CampaignStore) -> None:
    with pytest.raises(InputError, match="no campaign"):
        store.get("nope")


def test_transitions_follow_the_lifecycle(store: CampaignStore) -> None:
    cid = store.create("x", frame(10), window=4)
    assert store.transition(cid, State.PAUSED) == "queued"
    assert store.transition(cid, State.RUNNING) == "paused"
    store.transition(cid, State.CANCELLED)
    with pytest.raises(InvalidTransition, match="cancelled and cannot become running"):
        store.transition(cid, State.RUNNING)


def test_completed_and_cancelled_are_final() -> None:
    for final in ("completed", "cancelled"):
        for target in State:
            if target.value != final:
                with pytest.raises(InvalidTransition):
                    check_transition("c", final, target)


def test_a_finished_campaign_expires_with_all_its_keys(store: CampaignStore, redis_client: redis.Redis) -> None:
    cid = store.create("x", frame(150), window=4)
    store.expire(cid, 1000)
    keys = redis_client.keys(f"dsptest:c:{cid}*")
    assert keys and all(0 < redis_client.ttl(k) <= 1000 for k in keys)


def test_a_campaign_stores_about_a_hundred_bytes_per_message(store: CampaignStore, redis_client: redis.Redis) -> None:
    cid = store.create("x", frame(1000), window=4)
    ops = BatchOps(redis_client, Keys("dsptest"))
    for n in range(10):
        token = ops.claim(cid, n, lease_s=60).token
        ops.record(cid, n, [(i, ledger.encode("sent", 1, "a" * 24)) for i in range(100)], token=token)
    used = sum(redis_client.memory_usage(k) or 0 for k in redis_client.keys(f"dsptest:c:{cid}*"))
    assert used / 1000 < 200


def test_records_never_overwrite_a_terminal_state(store: CampaignStore, redis_client: redis.Redis) -> None:
    cid = store.create("x", frame(2), window=4)
    ops = BatchOps(redis_client, Keys("dsptest"))
    ops.record(cid, 0, [(0, ledger.encode("sent", 1, "id1"))], token=ops.claim(cid, 0, lease_s=60).token)
    ops.record(cid, 0, [(0, ledger.encode("failed", 2, "late")), (1, ledger.encode("unknown", 2))], otherwise="u",
               token=ops.claim(cid, 0, lease_s=60).token)
    counts = store.get(cid).counts
    assert (counts["sent"], counts["failed"], counts["unknown"]) == (1, 0, 1)
    ops.record(cid, 0, [(1, ledger.encode("sent", 3, "id2"))], token=ops.claim(cid, 0, lease_s=60).token)
    info = store.get(cid)
    assert (info.counts["sent"], info.counts["unknown"], info.state) == (2, 0, "completed")


def test_ledger_records_round_trip() -> None:
    record = ledger.decode(ledger.encode("rejected", 2, "to: invalid | bad"))
    assert (record.status, record.attempts, record.error) == ("rejected", 2, "to: invalid | bad")
    assert ledger.decode(None).status == "pending"
