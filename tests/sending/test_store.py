"""The campaign store and lifecycle, against a real Redis server."""

from __future__ import annotations

import secrets
import time
from datetime import time as dtime

import pytest
import redis

from dispatcher.errors import InputError, InvalidTransition, UnknownItem
from dispatcher.keys import Keys
from dispatcher.schema.names import State
from dispatcher.sending import ledger
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.lifecycle import check_transition
from dispatcher.sending.store import CampaignStore
from dispatcher.sending.windows import Window
from tests.helpers import accented_frame


@pytest.fixture()
def store(redis_client: redis.Redis) -> CampaignStore:
    return CampaignStore(redis_client, Keys("dsptest"))


def test_a_new_campaign_is_queued_with_its_messages_in_batches_of_100(store: CampaignStore) -> None:
    cid = store.create("spring", accented_frame(250), window=4, cost=11.25, currency="EUR")
    info = store.get(cid)
    assert (info.state, info.total, info.batches, info.counts["pending"]) == ("queued", 250, 3, 250)
    batches = list(store.iter_batches(cid))
    assert [len(m) for _, m, _ in batches] == [100, 100, 50]
    assert batches[2][1].text[0] == "Hola 200 ñ€" and batches[1][1].client_id(cid, 3) == f"{cid}-1-3"


def test_an_empty_campaign_completes_at_once(store: CampaignStore) -> None:
    cid = store.create("empty", accented_frame(0), window=4)
    assert store.get(cid).state == "completed"
    assert store.get(cid).reason == "nothing to send"


def test_an_unknown_campaign_id_is_a_plain_error(store: CampaignStore) -> None:
    with pytest.raises(InputError, match="no campaign"):
        store.get("nope")


def test_transitions_follow_the_lifecycle(store: CampaignStore) -> None:
    cid = store.create("x", accented_frame(10), window=4)
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
    cid = store.create("x", accented_frame(150), window=4)
    store.expire(cid, 1000)
    keys = redis_client.keys(f"dsptest:c:{cid}*")
    assert keys and all(0 < redis_client.ttl(k) <= 1000 for k in keys)


def test_a_campaign_stores_about_a_hundred_bytes_per_message(store: CampaignStore, redis_client: redis.Redis) -> None:
    cid = store.create("x", accented_frame(1000), window=4)
    ops = BatchOps(redis_client, Keys("dsptest"))
    for n in range(10):
        token = ops.claim(cid, n, lease_s=60).token
        ops.record(cid, n, [(i, ledger.encode("sent", 1, "a" * 24)) for i in range(100)], token=token)
    used = sum(redis_client.memory_usage(k) or 0 for k in redis_client.keys(f"dsptest:c:{cid}*"))
    assert used / 1000 < 200


def test_records_never_overwrite_a_terminal_state(store: CampaignStore, redis_client: redis.Redis) -> None:
    cid = store.create("x", accented_frame(2), window=4)
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


def test_a_sent_record_keeps_a_hex_instasent_id_packed_and_reads_back_either_form() -> None:
    packed = ledger.encode("sent", 2, "09cdadf05a2da7158f10420f")
    assert len(packed) == 19 and packed.startswith("s2:")
    assert ledger.decode(packed.encode()) == ledger.Record("sent", 2, "09cdadf05a2da7158f10420f")
    # The form a delivery report writes (dispatcher.delivery.reports), and ids that do not pack.
    assert ledger.decode(b"s|0|09cdadf05a2da7158f10420f").instasent_id == "09cdadf05a2da7158f10420f"
    for odd in ("ABCDEF", "abc", "id-1", ""):
        assert ledger.encode("sent", 1, odd) == f"s|1|{odd}" and ledger.decode(f"s|1|{odd}").detail == odd


def test_encoding_a_batchs_sent_records_at_once_gives_each_records_own_encoding() -> None:
    cases = [[secrets.token_hex(12) for _ in range(100)], [secrets.token_hex(3), secrets.token_hex(3)],
             ["09cdadf05a2da7158f10420f", "id-1"], ["ABCDEF", "abcdef"], ["ab cd ", "ab cd "], ["abc", "def"],
             ["", ""], [],
             [secrets.token_hex(12), secrets.token_hex(9)], ["ab" * 66, "cd" * 66], ["0a\n1b", "0a\n1b"]]
    for ids in cases:
        assert ledger.encode_sent(3, ids) == [ledger.encode("sent", 3, i) for i in ids]


def test_a_sent_batch_keeps_every_hash_in_the_compact_encoding(store: CampaignStore,
                                                               redis_client: redis.Redis) -> None:
    keys, ops = Keys("dsptest"), BatchOps(redis_client, Keys("dsptest"))
    cid = store.create("x", accented_frame(100), window=4)
    token = ops.claim(cid, 0, lease_s=60).token
    ops.record(cid, 0, [(i, ledger.encode("sent", 1, f"{i:024x}")) for i in range(100)], token=token)
    assert redis_client.object("encoding", keys.batch(cid, 0)) == b"listpack"
    assert redis_client.object("encoding", keys.ledger(cid, 0)) == b"listpack"
    assert redis_client.type(keys.payload(cid, 0)) == b"string"
    assert [r.instasent_id for r in next(store.iter_batches(cid))[2].values()][:2] == [f"{0:024x}", f"{1:024x}"]


def test_a_batch_stored_with_its_messages_in_its_hash_is_still_claimed_and_read(store: CampaignStore,
                                                                                redis_client: redis.Redis) -> None:
    keys, ops = Keys("dsptest"), BatchOps(redis_client, Keys("dsptest"))
    cid = store.create("x", accented_frame(3), window=4)
    blob = redis_client.get(keys.payload(cid, 0))
    redis_client.delete(keys.payload(cid, 0))
    redis_client.hset(keys.batch(cid, 0), "p", blob)  # the layout before the messages had a key of their own
    assert ops.claim(cid, 0, lease_s=60).payload == blob
    assert next(store.iter_batches(cid))[1].to == ["+34600000000", "+34600000001", "+34600000002"]
    assert store.blob(cid, 0) == blob


def test_expiring_a_campaign_gives_every_one_of_its_keys_the_ttl(store: CampaignStore,
                                                                 redis_client: redis.Redis) -> None:
    keys = Keys("dsptest")
    cid = store.create("x", accented_frame(150), window=4)
    store.store_rejects(cid, [{"row": 9, "reason": "invalid"}])
    redis_client.rpush(keys.inbound(cid), "a reply")
    redis_client.zadd(keys.parked_in(cid), {f"{cid}:1": 1})
    redis_client.hset(keys.client_ids(cid), f"{cid}-0-0", "0:0")
    for n in range(2):
        redis_client.hset(keys.ledger(cid, n), "0", ledger.encode("sent", 1, "id"))
        redis_client.hset(keys.delivery(cid, n), "0", "delivered|2026-11-23T10:00:05Z|0")
    store.expire(cid, 1000)
    every = [keys.campaign(cid), keys.rejects(cid), keys.inbound(cid), keys.parked_in(cid), keys.client_ids(cid),
             *(k(cid, n) for n in range(2) for k in (keys.batch, keys.payload, keys.ledger, keys.delivery))]
    assert {k: 0 < redis_client.ttl(k) <= 1000 for k in every} == dict.fromkeys(every, True)


def test_rejects_are_kept_with_the_campaign_in_order(store: CampaignStore) -> None:
    cid = store.create("x", accented_frame(1), window=4)
    store.store_rejects(cid, [])
    assert store.rejects(cid) == []
    rejects = [{"row": i, "reason": f"bad {i}"} for i in range(12_001)]  # more than one write chunk
    store.store_rejects(cid, rejects)
    assert store.rejects(cid) == rejects


def test_recent_lists_the_newest_campaigns_first_and_skips_expired_ones(store: CampaignStore,
                                                                        redis_client: redis.Redis) -> None:
    ids = [store.create(f"c{i}", accented_frame(1), window=4) for i in range(3)]
    assert [c.id for c in store.recent()] == ids[::-1]
    assert [c.id for c in store.recent(limit=2)] == ids[:0:-1]
    redis_client.delete(Keys("dsptest").campaign(ids[1]))
    assert [c.name for c in store.recent()] == ["c2", "c0"]


def test_batch_states_follow_each_batch(store: CampaignStore) -> None:
    ops = BatchOps(store.redis, Keys("dsptest"))
    cid = store.create("x", accented_frame(250), window=4)
    ops.claim(cid, 1, lease_s=60)
    ops.record(cid, 2, [(i, ledger.encode("sent", 1, "id")) for i in range(50)],
               token=ops.claim(cid, 2, lease_s=60).token)
    assert store.batch_states(cid, [0, 1, 2]) == ["p", "i", "d"]
    assert store.batch_states(cid, [7]) == [""]


def test_status_json_has_every_field_a_dashboard_reads(store: CampaignStore) -> None:
    cid = store.create("spring", accented_frame(3), window=4, cost=0.135, currency="EUR", options={"text": "Hola"},
                       preflight={"valid": 3, "suppressed": 2}, expires_at=1_800_000_000.0)
    ops = BatchOps(store.redis, Keys("dsptest"))
    ops.record(cid, 0, [(0, ledger.encode("sent", 1, "id")), (1, ledger.encode("rejected", 1, "bad"))],
               token=ops.claim(cid, 0, lease_s=60).token)
    shown = store.get(cid).to_json()
    assert {k: shown[k] for k in ("id", "name", "state", "reason", "total", "batches", "settled_batches", "cost",
                                  "currency", "delivered", "undelivered", "delivery_rate", "waiting_for_window",
                                  "expires_at", "send_window", "preflight")} == {
        "id": cid, "name": "spring", "state": "running", "reason": "", "total": 3, "batches": 1, "settled_batches": 0,
        "cost": 0.135, "currency": "EUR", "delivered": 0, "undelivered": 0, "delivery_rate": None,
        "waiting_for_window": 0, "expires_at": 1_800_000_000.0, "send_window": None,
        "preflight": {"valid": 3, "suppressed": 2}}
    assert shown["counts"] == {"pending": 1, "sent": 1, "rejected": 1, "failed": 0, "unknown": 0, "cancelled": 0,
                               "expired": 0, "suppressed": 2}
    # The claim that moved it to running set its start time (issue 11); it is not finished.
    assert shown["created_at"] > 0 and shown["started_at"] >= shown["created_at"] and shown["finished_at"] is None
    assert shown["updated_at"] is not None


def test_claiming_says_why_a_batch_cannot_be_taken(store: CampaignStore) -> None:
    ops = BatchOps(store.redis, Keys("dsptest"))
    assert ops.claim("nosuchcampaign", 0, lease_s=60).kind == "missing"
    cid = store.create("x", accented_frame(250), window=4)
    held = ops.claim(cid, 0, lease_s=60)
    assert (held.kind, held.claimed, held.must_reconcile, held.attempts) == ("send", True, False, 0)
    busy = ops.claim(cid, 0, lease_s=60)
    assert busy.kind == "busy" and 55 < busy.wait_s <= 60
    store.transition(cid, State.PAUSED, "by hand")
    skipped = ops.claim(cid, 1, lease_s=60)
    assert (skipped.kind, skipped.state, skipped.claimed) == ("skip", "paused", False)


def test_reserving_fills_the_queue_window_from_where_it_stopped(store: CampaignStore) -> None:
    ops = BatchOps(store.redis, Keys("dsptest"))
    cid = store.create("x", accented_frame(1000), window=3)
    assert ops.reserve(cid) == range(0, 3)
    assert ops.reserve(cid) == range(0, 0)
    recorded = ops.record(cid, 0, [(i, ledger.encode("sent", 1, "id")) for i in range(100)],
                          token=ops.claim(cid, 0, lease_s=60).token)
    assert recorded.reserved == range(3, 4) and recorded.batch_state == "d"


def test_unknown_batches_are_those_left_unknown_for_longer_than_the_grace(store: CampaignStore) -> None:
    ops = BatchOps(store.redis, Keys("dsptest"))
    cid = store.create("x", accented_frame(300), window=4)
    ops.record(cid, 1, [(0, ledger.encode("unknown", 1))], otherwise="u", token=ops.claim(cid, 1, lease_s=60).token)
    ops.record(cid, 2, [(0, ledger.encode("sent", 1, "id"))], otherwise="p", token=ops.claim(cid, 2, lease_s=60).token)
    now = time.time()
    assert ops.unknown_batches(cid, 3, older_than=now + 1) == [1]
    assert ops.unknown_batches(cid, 3, older_than=now - 60) == []


def test_only_reserved_batches_never_attempted_are_re_enqueued(store: CampaignStore) -> None:
    ops = BatchOps(store.redis, Keys("dsptest"))
    cid = store.create("x", accented_frame(400), window=4)
    ops.claim(cid, 1, lease_s=0)
    ops.record(cid, 1, [], posted=True, token=ops.claim(cid, 1, lease_s=60).token)  # attempted once, back to pending
    ops.claim(cid, 2, lease_s=60)  # in flight
    assert ops.reserved_but_unclaimed(cid, range(0, 4)) == [0, 3]
    assert ops.reserved_but_unclaimed(cid, range(0, 0)) == []


def test_a_parked_batch_with_an_unknown_outcome_stays_unknown(store: CampaignStore) -> None:
    ops = BatchOps(store.redis, Keys("dsptest"))
    cid = store.create("x", accented_frame(200), window=1)
    assert ops.reserve(cid) == range(0, 1)
    parked = ops.park(cid, 0, until=1.0, unknown=True, token=ops.claim(cid, 0, lease_s=60).token)
    assert parked == (range(1, 2), "parked")  # its queue slot goes to batch 1
    ops.park(cid, 1, until=1.0, unknown=False, token=ops.claim(cid, 1, lease_s=60).token)
    assert store.batch_states(cid, [0, 1]) == ["u", "p"]
    assert ops.claim(cid, 0, lease_s=60).must_reconcile
    assert not ops.claim(cid, 1, lease_s=60).must_reconcile


def test_iterating_a_campaign_pairs_each_batch_with_its_own_records_past_the_read_chunk(
        store: CampaignStore) -> None:
    ops = BatchOps(store.redis, Keys("dsptest"))
    cid = store.create("x", accented_frame(20_150), window=4)  # 202 batches: more than one read chunk of 200
    ops.record(cid, 1, [(5, ledger.encode("sent", 1, "one"))], token=ops.claim(cid, 1, lease_s=60).token)
    ops.record(cid, 201, [(7, ledger.encode("rejected", 1, "last"))], token=ops.claim(cid, 201, lease_s=60).token)
    read = [(n, len(messages), records) for n, messages, records in store.iter_batches(cid)]
    assert [n for n, _, _ in read] == list(range(202))
    seen = {n: (size, records) for n, size, records in read}
    assert seen[0] == (100, {}) and seen[201][0] == 50
    assert seen[1][1] == {5: ledger.Record("sent", 1, "one")}
    assert seen[201][1] == {7: ledger.Record("rejected", 1, "last")}


def test_a_campaign_with_nothing_parked_has_no_window_opening(store: CampaignStore) -> None:
    ops = BatchOps(store.redis, Keys("dsptest"))
    cid = store.create("x", accented_frame(300), window=4)
    assert store.next_window_opening(cid) is None
    ops.park(cid, 2, until=2000.0, unknown=False, token=ops.claim(cid, 2, lease_s=60).token)
    ops.park(cid, 1, until=1000.0, unknown=False, token=ops.claim(cid, 1, lease_s=60).token)
    assert store.next_window_opening(cid) == 1000.0


def test_moving_an_unknown_campaign_is_a_plain_error(store: CampaignStore) -> None:
    with pytest.raises(InputError, match="no campaign with id 'nope'"):
        store.transition("nope", State.PAUSED)


def test_a_campaign_hash_without_its_state_reads_as_incomplete_and_one_with_it_reads_with_plain_defaults(
        store: CampaignStore, redis_client: redis.Redis) -> None:
    # Only an id left (Redis lost the rest, say): one plain sentence, never a KeyError (issue 11).
    redis_client.hset(Keys("dsptest").campaign("old"), "id", "old")
    with pytest.raises(UnknownItem, match="campaign old's data in Redis is incomplete; it cannot be shown"):
        store.get("old")
    redis_client.hset(Keys("dsptest").campaign("old"), "state", "running")  # written by an older version, say
    info = store.get("old")
    assert (info.name, info.state, info.reason, info.total, info.batches, info.enqueued, info.settled) == (
        "", "running", "", 0, 0, 0, 0)
    assert info.counts == {"pending": 0, "sent": 0, "rejected": 0, "failed": 0, "unknown": 0, "cancelled": 0,
                           "expired": 0, "suppressed": 0}
    assert (info.created_at, info.started_at, info.finished_at, info.updated_at, info.cost, info.currency) == (
        0.0, None, None, None, 0.0, "")
    assert (info.options, info.preflight, info.delivery, info.waiting, info.expires_at, info.send_window) == (
        {}, {}, {"delivered": 0, "undelivered": 0}, 0, None, None)


def test_every_field_of_a_campaign_reads_back_as_written(store: CampaignStore) -> None:
    ops = BatchOps(store.redis, Keys("dsptest"))
    window = Window(dtime(9), dtime(21), frozenset({0, 1, 2, 3, 4}))
    messages = accented_frame(3).assign(sender=["ACME", "Shop", "X"], unicode=[False, True, False],
                               country=["ES", "PT", "FR"])
    cid = store.create("x", messages, window=4, options={"text": "Hola"}, send_window=window,
                       zones=["Europe/Lisbon", "Europe/Madrid", "Europe/Madrid"])
    assert len(cid) == 10
    assert [len(m) for _, m, _ in store.iter_batches(cid)] == [1, 2]  # never two time zones in a batch
    batch = next(store.iter_batches(cid))[1]
    assert (batch.sender, batch.unicode, batch.country) == (["ACME"], [False], ["ES"])
    second = list(store.iter_batches(cid))[1][1]
    assert (second.sender, second.unicode, second.country) == (["Shop", "X"], [True, False], ["PT", "FR"])
    ops.reserve(cid)
    ops.claim(cid, 0, lease_s=60)
    store.transition(cid, State.CANCELLED, "by hand")
    store.redis.hset(Keys("dsptest").campaign(cid), mapping={"d:delivered": 2, "d:undelivered": 1})
    info = store.get(cid)
    assert (info.enqueued, info.options, info.send_window, info.cost, info.currency) == (2, {"text": "Hola"}, window,
                                                                                         0.0, "")
    assert info.started_at is not None and info.finished_at is not None and info.finished_at >= info.started_at
    shown = info.to_json()
    assert (shown["delivered"], shown["undelivered"], shown["send_window"]) == (2, 1, window.to_json())


def test_cancelling_idle_batches_marks_their_messages_and_frees_the_queue(store: CampaignStore) -> None:
    ops = BatchOps(store.redis, Keys("dsptest"))
    cid = store.create("x", accented_frame(400), window=3)
    assert ops.reserve(cid) == range(0, 3)
    ops.claim(cid, 1, lease_s=60)  # in flight: left alone
    assert ops.cancel(cid, [0, 2]) == 200
    assert [r.status for r in dict(next(iter(store.iter_batches(cid)))[2]).values()] == ["cancelled"] * 100
    assert ops.reserve(cid) == range(3, 4)  # two settled batches freed their slots; one batch was left
    assert store.get(cid).counts["cancelled"] == 200
