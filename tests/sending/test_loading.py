"""Campaigns that send while their list loads: real Redis, a real worker, the sandbox over HTTP."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import redis

from dispatcher.errors import BudgetExceeded, InputError
from dispatcher.instasent.client import InstasentClient
from dispatcher.preflight.hlr import HlrAnswer, HlrCache
from dispatcher.preflight.lookups import LookupEstimate
from dispatcher.preflight.result import PreflightOptions, PreflightResult
from dispatcher.preflight.stream import StreamedPreflight
from dispatcher.sending import campaigns, loading
from dispatcher.sending.chunkstore import Loaded
from dispatcher.sending.enqueuer import Enqueuer
from dispatcher.sending.report import build_report, stream_report, write_report
from dispatcher.sending.submission import preflight
from dispatcher.settings import Settings
from tests.helpers import Harness, SandboxHandle, assert_exactly_once, finished, messy_list, wait_until

pytestmark = pytest.mark.slow

OPTIONS = PreflightOptions(text="Hola {name}", sender="ACME", country="ES", hlr=False)
#: HLR on auto: lookups only when free (all cached) or confirmed.
AUTO = PreflightOptions(text="Hola {name}", sender="ACME", country="ES", hlr=None)


def recipients_csv(path: Path, n: int, duplicates_every: int = 0) -> Path:
    """``n`` Spanish mobiles in national form; with ``duplicates_every``, every k-th row repeats an
    earlier number written in E.164 (so duplicates cross chunk boundaries)."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["phone", "name"])
        for i in range(n):
            if duplicates_every and i and i % duplicates_every == 0:
                writer.writerow([f"+34 {number(i // 3)}", f"dup {i}"])
            else:
                writer.writerow([number(i), f"Cliente {i}"])
        writer.writerow(["12345", "bad"])
    return path


def number(k: int) -> str:
    """The k-th Spanish mobile of the test lists (national form)."""
    return f"6{10_000_000 + k:08d}"


class HookedEnqueuer:
    """The real enqueuer, plus ``hook(campaign_id, call number)`` after each enqueue."""

    def __init__(self, inner: Enqueuer, hook: Callable[[str, int], None]) -> None:
        self.inner, self.hook, self.calls = inner, hook, 0

    def enqueue(self, campaign_id: str, numbers: Sequence[int]) -> None:
        self.inner.enqueue(campaign_id, numbers)
        self.calls += 1
        self.hook(campaign_id, self.calls)


@pytest.fixture()
def harness(settings: Settings, redis_client: redis.Redis, sandbox: SandboxHandle) -> Iterator[Harness]:
    h = Harness(settings.with_overrides(queue_window=8), redis_client, sandbox)
    yield h
    h.stop()


def submit(h: Harness, path: Path, enqueuer: Enqueuer, chunk_rows: int = 500,
           options: PreflightOptions = OPTIONS, one_pass: bool = True) -> tuple[str, Loaded]:
    with InstasentClient.from_settings(h.settings) as client:
        cid, _, loaded = loading.create_and_load(h.store, h.ops, enqueuer, h.settings, path=path, options=options,
                                                 client=client, name="streamed", chunk_rows=chunk_rows,
                                                 one_pass=one_pass)
    return cid, loaded


def test_a_streamed_list_is_sent_exactly_once_and_completes(harness: Harness, tmp_path: Path) -> None:
    harness.start_worker()
    path = recipients_csv(tmp_path / "list.csv", 3000, duplicates_every=7)
    cid, loaded = submit(harness, path, harness.enqueuer)
    assert loaded.outcome == "complete"
    info = harness.wait(cid, finished)
    assert info.state == "completed"
    assert info.total == loaded.stored == info.preflight["valid"]
    assert_exactly_once(harness, cid, info)
    assert loading.progress(harness.store, cid) is None
    assert len(harness.store.rejects(cid)) == 1
    # Streamed in small pieces, the report is the one built whole.
    write_report(build_report(harness.store, cid), tmp_path / "whole.csv")
    assert stream_report(harness.store, cid, tmp_path / "streamed.csv", piece_rows=250) == ("csv", info.total)
    assert (tmp_path / "whole.csv").read_bytes() == (tmp_path / "streamed.csv").read_bytes()
    write_report(build_report(harness.store, cid), tmp_path / "whole.parquet")
    stream_report(harness.store, cid, tmp_path / "streamed.parquet", piece_rows=250)
    streamed = pq.ParquetFile(tmp_path / "streamed.parquet")
    assert streamed.num_row_groups > 1
    pd.testing.assert_frame_equal(streamed.read().to_pandas(), pd.read_parquet(tmp_path / "whole.parquet"))


def test_a_bulk_is_accepted_while_the_list_still_loads(harness: Harness, tmp_path: Path) -> None:
    harness.start_worker()
    seen: list[bool] = []

    def after_first_chunk(cid: str, call: int) -> None:
        if call == 1:
            wait_until(lambda: harness.store.get(cid).counts["sent"] > 0, 60)
            progress = loading.progress(harness.store, cid)
            seen.append(progress is not None and progress.loading and not progress.interrupted)

    path = recipients_csv(tmp_path / "list.csv", 2000)
    cid, _ = submit(harness, path, HookedEnqueuer(harness.enqueuer, after_first_chunk))
    assert seen == [True]
    assert harness.sandbox.stats()["accepted"] > 0
    info = harness.wait(cid, finished)
    assert info.state == "completed" and info.counts["sent"] == 2000
    assert_exactly_once(harness, cid, info)


def test_a_campaign_is_never_completed_while_its_list_loads(harness: Harness, tmp_path: Path) -> None:
    harness.start_worker()
    states: list[str] = []

    def settle_everything_stored(cid: str, call: int) -> None:
        if call <= 2:  # every batch stored so far has settled, and more rows are coming
            wait_until(lambda: (i := harness.store.get(cid)).settled == i.batches > 0, 60)
            states.append(harness.store.get(cid).state)

    path = recipients_csv(tmp_path / "list.csv", 1500)
    cid, _ = submit(harness, path, HookedEnqueuer(harness.enqueuer, settle_everything_stored))
    assert states == ["running", "running"]
    info = harness.wait(cid, finished)
    assert info.state == "completed" and info.counts["sent"] == 1500


def test_cancel_during_loading_stops_loading_and_sending(harness: Harness, tmp_path: Path) -> None:
    harness.sandbox.faults(latency_ms=30)
    harness.start_worker()

    def cancel_after_first_chunk(cid: str, call: int) -> None:
        if call == 1:
            campaigns.cancel(harness.store, harness.ops, cid, ttl_s=3600)

    path = recipients_csv(tmp_path / "list.csv", 3000)
    cid, loaded = submit(harness, path, HookedEnqueuer(harness.enqueuer, cancel_after_first_chunk))
    assert loaded.outcome == "stopped" and loaded.state == "cancelled"
    info = harness.wait(cid, lambda i: i.counts["pending"] == 0 and i.counts["unknown"] == 0)
    assert info.state == "cancelled" and info.total == 500  # the first chunk only
    assert info.counts["sent"] + info.counts["cancelled"] == 500
    assert info.counts["sent"] == len(harness.accepted_per_client_id(cid))
    assert loading.progress(harness.store, cid) is None


@pytest.mark.parametrize("one_pass", [True, False], ids=["one pass", "counted first"])
def test_pause_during_loading_stops_it_and_resume_loads_the_rest(harness: Harness, tmp_path: Path,
                                                                 one_pass: bool) -> None:
    harness.start_worker()

    def pause_after_second_chunk(cid: str, call: int) -> None:
        if call == 2:
            campaigns.pause(harness.store, cid)

    path = recipients_csv(tmp_path / "list.csv", 2500, duplicates_every=5)
    cid, loaded = submit(harness, path, HookedEnqueuer(harness.enqueuer, pause_after_second_chunk),
                         one_pass=one_pass)
    assert loaded.outcome == "stopped" and loaded.state == "paused"
    progress = loading.progress(harness.store, cid)
    assert progress is not None and progress.interrupted
    if one_pass:  # the number of messages is known once the whole file is checked
        assert progress.expected is None and progress.file_rows == 2501 and progress.rows_read < 2501
        assert "of 2,501 rows read" in progress.describe()
    else:
        assert progress.expected is not None and progress.stored < progress.expected
    assert harness.store.get(cid).state == "paused"
    campaigns.resume(harness.store, harness.ops, harness.enqueuer, cid)
    with InstasentClient.from_settings(harness.settings) as client:
        again = loading.load(harness.store, harness.ops, harness.enqueuer, cid, client=client,
                             settings=harness.settings)
    assert again.outcome == "complete"
    info = harness.wait(cid, finished)
    assert info.state == "completed" and info.total == info.preflight["valid"]
    assert_exactly_once(harness, cid, info)
    sent = sorted(m["to"] for m in harness.sandbox.messages() if str(m["clientId"]).startswith(cid))
    assert len(sent) == len(set(sent)) == info.total


def test_the_budget_guard_refuses_before_anything_is_stored(harness: Harness, tmp_path: Path,
                                                             redis_client: redis.Redis) -> None:
    path = recipients_csv(tmp_path / "list.csv", 800)
    options = PreflightOptions(text="Hola {name}", sender="ACME", country="ES", hlr=False, max_cost=1.0)
    with pytest.raises(BudgetExceeded):
        submit(harness, path, harness.enqueuer, options=options)
    assert harness.store.recent() == []
    assert not [k for k in redis_client.scan_iter("dsptest:c:*")]


def one_pass_and_counting_first(h: Harness, path: Path, options: PreflightOptions) -> tuple[
        str, PreflightResult, Loaded, list[float], str, PreflightResult]:
    """Submit ``path`` twice, in one pass (``one``) and counting first (``two``): the first's id,
    result, loading and cost bounds seen, then the second's id and result."""
    with InstasentClient.from_settings(h.settings) as client:
        bounds: list[float] = []
        one, one_result, loaded = loading.create_and_load(
            h.store, h.ops, h.enqueuer, h.settings, path=path, options=options, client=client, name="one",
            chunk_rows=500, on_bound=lambda bound, *_: bounds.append(bound.cost))
        two, two_result, _ = loading.create_and_load(
            h.store, h.ops, h.enqueuer, h.settings, path=path, options=options, client=client, name="two",
            chunk_rows=500, one_pass=False)
    return one, one_result, loaded, bounds, two, two_result


def test_one_pass_stores_what_counting_first_stores(harness: Harness, tmp_path: Path) -> None:
    path = recipients_csv(tmp_path / "list.csv", 1800, duplicates_every=4)
    one, one_result, _, bounds, two, two_result = one_pass_and_counting_first(harness, path, OPTIONS)
    assert len(bounds) == 1 and bounds[0] >= one_result.cost > 0
    assert one_result.to_json() == two_result.to_json()
    first, second = harness.store.get(one), harness.store.get(two)
    assert first.preflight == second.preflight and first.preflight["valid"] == first.total == second.total
    assert first.cost == pytest.approx(second.cost)
    assert harness.store.rejects(one) == harness.store.rejects(two)
    key = harness.store.keys.campaign
    assert harness.store.redis.hget(key(one), "expected") == harness.store.redis.hget(key(two), "expected")
    assert loading.progress(harness.store, one) is None


def test_a_list_with_nothing_to_send_is_refused_in_one_pass_with_no_campaign(harness: Harness,
                                                                           tmp_path: Path) -> None:
    path = tmp_path / "junk.csv"
    path.write_text("phone,name\n" + "n/a,x\n" * 700 + "12345,y\n")
    with pytest.raises(InputError, match=r"no row of junk\.csv can be sent"):
        submit(harness, path, harness.enqueuer)
    assert harness.store.recent() == []


def test_a_bound_over_the_budget_falls_back_to_counting_first(harness: Harness, tmp_path: Path) -> None:
    path = recipients_csv(tmp_path / "list.csv", 600, duplicates_every=2)  # a third of the rows repeat
    with InstasentClient.from_settings(harness.settings) as client:
        price = next(p.price for p in client.sms_prices() if p.country == "ES")
        exact = StreamedPreflight(path, OPTIONS, settings=harness.settings, redis=harness.store.redis,
                                  client=client).count().cost
        options = PreflightOptions(text="Hola {name}", sender="ACME", country="ES", hlr=False,
                                   max_cost=exact + price / 2)
        bounds: list[float] = []
        cid, result, loaded = loading.create_and_load(
            harness.store, harness.ops, harness.enqueuer, harness.settings, path=path, options=options,
            client=client, name="tight", chunk_rows=200, on_bound=lambda bound, *_: bounds.append(bound.cost))
    assert bounds == [] and loaded.outcome == "complete" and result.cost == pytest.approx(exact)
    assert harness.store.get(cid).total == result.valid


@pytest.mark.parametrize("ragged_first", [False, True], ids=["ragged row last", "ragged row first"])
def test_a_ragged_messy_list_in_one_pass_stores_what_the_preflight_finds(harness: Harness, tmp_path: Path,
                                                                       ragged_first: bool) -> None:
    path = messy_list(tmp_path / "messy.csv", n=1200)
    if ragged_first:  # met while the first chunk is checked beside the bound pass
        header, *rows = path.read_text(encoding="utf-8").splitlines()
        path.write_text("\n".join([header, rows[-1], *rows[:-1]]) + "\n", encoding="utf-8")
    with InstasentClient.from_settings(harness.settings) as client:
        expected = preflight(path, OPTIONS, settings=harness.settings, redis=harness.store.redis,
                             client=client).to_json()
        bounds: list[float] = []
        cid, result, loaded = loading.create_and_load(
            harness.store, harness.ops, harness.enqueuer, harness.settings, path=path, options=OPTIONS,
            client=client, name="messy", chunk_rows=300, on_bound=lambda bound, *_: bounds.append(bound.cost))
    assert bounds and loaded.outcome == "complete"
    assert result.to_json() == expected
    assert harness.store.get(cid).total == expected["valid"]
    assert len(harness.store.rejects(cid)) == expected["rejected"]


def cache_of(h: Harness) -> HlrCache:
    return HlrCache(h.store.redis, h.store.keys, h.settings.hlr_cache_ttl_s)


def test_hlr_on_auto_with_nobody_to_ask_takes_the_one_pass_and_sums_up_as_counting_first(
        harness: Harness, tmp_path: Path) -> None:
    path = recipients_csv(tmp_path / "list.csv", 1800, duplicates_every=4)
    cache_of(harness).put_many({f"+34{number(k)}": HlrAnswer("valid") for k in (1, 2, 901)})  # a few are free
    one, one_result, loaded, bounds, two, two_result = one_pass_and_counting_first(harness, path, AUTO)
    assert len(bounds) == 1 and loaded.outcome == "complete"
    assert one_result.to_json() == two_result.to_json()
    assert not one_result.hlr_done and one_result.lookups == one_result.lookups_cached == 0
    estimate = one_result.hlr_estimate
    assert estimate is not None and (estimate.numbers, estimate.cached) == (one_result.valid, 3)
    assert estimate.to_pay == one_result.valid - 3 and estimate.cost > 0
    assert harness.store.get(one).preflight == harness.store.get(two).preflight
    assert harness.sandbox.stats()["lookups"] == 0


def test_hlr_on_auto_with_every_number_cached_counts_first_and_reads_the_cache(
        harness: Harness, tmp_path: Path) -> None:
    path = recipients_csv(tmp_path / "list.csv", 600)
    cache_of(harness).put_many({f"+34{number(k)}": HlrAnswer("valid" if k % 10 else "invalid") for k in range(600)})
    with InstasentClient.from_settings(harness.settings) as client:
        bounds: list[float] = []
        cid, result, loaded = loading.create_and_load(
            harness.store, harness.ops, harness.enqueuer, harness.settings, path=path, options=AUTO,
            client=client, name="cached", chunk_rows=200, on_bound=lambda bound, *_: bounds.append(bound.cost))
    assert bounds == [] and loaded.outcome == "complete"
    assert result.hlr_done and (result.lookups, result.lookups_cached) == (0, 600)
    assert (result.valid, result.rejected) == (540, 61)  # every tenth number is invalid, plus 12345
    assert harness.store.get(cid).total == 540
    assert harness.sandbox.stats()["lookups"] == 0


def test_hlr_on_auto_with_someone_to_ask_counts_first(harness: Harness, tmp_path: Path) -> None:
    path = recipients_csv(tmp_path / "list.csv", 600)
    asked: list[LookupEstimate] = []

    def decline(estimate: LookupEstimate) -> bool:
        asked.append(estimate)
        return False

    with InstasentClient.from_settings(harness.settings) as client:
        bounds: list[float] = []
        _, result, loaded = loading.create_and_load(
            harness.store, harness.ops, harness.enqueuer, harness.settings, path=path, options=AUTO,
            client=client, name="asked", chunk_rows=200, confirm=decline,
            on_bound=lambda bound, *_: bounds.append(bound.cost))
    assert bounds == [] and loaded.outcome == "complete"
    assert [e.to_pay for e in asked] == [600] and not result.hlr_done
    assert result.hlr_estimate == asked[0] and harness.sandbox.stats()["lookups"] == 0
