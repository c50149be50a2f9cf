"""The streamed preflight answers exactly what the whole-file preflight answers, in bounded memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import redis

from bench.whole_list import run_preflight
from dispatcher.instasent.client import InstasentClient
from dispatcher.keys import Keys
from dispatcher.preflight.dedup import SeenNumbers
from dispatcher.preflight.hlr import HlrAnswer, HlrCache
from dispatcher.preflight.rejects import Reject, write_rejects
from dispatcher.preflight.result import PreflightOptions
from dispatcher.preflight.spill import RejectSpill
from dispatcher.preflight.stream import StreamedPreflight
from dispatcher.preflight.suppression import SuppressionList
from dispatcher.sending.submission import preflight
from dispatcher.settings import Settings
from tests.helpers import SandboxHandle, messy_list

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "campaign.csv"


@pytest.fixture()
def client(settings: Settings) -> Iterator[InstasentClient]:
    with InstasentClient.from_settings(settings) as instasent:
        yield instasent


def both(path: Path, settings: Settings, redis_client: redis.Redis, client: InstasentClient, chunk_rows: int,
         **options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    opts = PreflightOptions(**{"text": "Hola {name}", "sender": "Shop", "country": "ES", "hlr": False, **options})
    old = run_preflight(path, opts, settings=settings, redis=redis_client, client=client).to_json()
    new = preflight(path, opts, settings=settings, redis=redis_client, client=client,
                    chunk_rows=chunk_rows).to_json()
    # What only the streamed preflight shows (issue 22): compared across chunk sizes below.
    for key in INSIGHT_KEYS:
        new.pop(key)
    return old, new


#: Keys of the streamed preflight's preview and Unicode analysis (``dispatcher.preflight.insight``).
INSIGHT_KEYS = ("preview", "unicode_chars", "unicode_extra_parts", "unicode_extra_cost", "parts_per_message")


def test_the_preview_and_unicode_analysis_do_not_depend_on_the_chunk_size(
        tmp_path: Path, settings: Settings, redis_client: redis.Redis, client: InstasentClient) -> None:
    path = messy_list(tmp_path / "list.csv")
    opts = PreflightOptions(text="Hola {name}", sender="Shop", country="ES", hlr=False)
    small, whole = (preflight(path, opts, settings=settings, redis=redis_client, client=client,
                              chunk_rows=rows).to_json() for rows in (97, 100_000))
    unicode_extra_cost = small.pop("unicode_extra_cost")
    assert unicode_extra_cost == pytest.approx(whole.pop("unicode_extra_cost"))
    assert {k: small[k] for k in INSIGHT_KEYS if k in small} == {k: whole[k] for k in INSIGHT_KEYS if k in whole}
    assert [p["row"] for p in small["preview"]] == sorted(p["row"] for p in small["preview"])
    assert (len(small["preview"]) == 5 and small["preview"][0]["row"] == 2) or small["preview"][0]["row"] > 2
    chars = {c["char"] for c in small["unicode_chars"]}
    assert {"ë", "Ł"} <= chars and sum(small["parts_per_message"].values()) == small["messages"]


@pytest.mark.parametrize("chunk_rows", [97, 500, 100_000])
def test_streamed_totals_and_rejects_equal_the_whole_file_path(
        tmp_path: Path, settings: Settings, redis_client: redis.Redis, client: InstasentClient,
        chunk_rows: int) -> None:
    path = messy_list(tmp_path / "list.csv")
    SuppressionList(redis_client, Keys(settings.key_prefix)).add(["+34610000007", "+351910000001"])
    old, new = both(path, settings, redis_client, client, chunk_rows, text="Hola {name}")
    assert old["duplicates"] > 100 and old["rejected"] > 50  # the file exercises every step
    assert new == old


def test_the_example_campaign_and_gsm_only_give_the_same_answer_streamed(
        settings: Settings, redis_client: redis.Redis, client: InstasentClient) -> None:
    old, new = both(EXAMPLE, settings, redis_client, client, 128, text="Hola {name} de {city}", gsm_only=True)
    assert new == old


def test_with_hlr_the_streamed_preflight_pays_the_same_lookups_and_rejects_the_same_numbers(
        tmp_path: Path, settings: Settings, redis_client: redis.Redis, client: InstasentClient,
        sandbox: SandboxHandle) -> None:
    path = messy_list(tmp_path / "list.csv", n=600)
    opts = PreflightOptions(text="Hola {name}", sender="Shop", country="ES", hlr=True)
    old = run_preflight(path, opts, settings=settings, redis=redis_client, client=client).to_json()
    redis_client.flushall()
    sandbox.reset()
    new = preflight(path, opts, settings=settings, redis=redis_client, client=client,
                    chunk_rows=150).to_json()
    for key in INSIGHT_KEYS:
        new.pop(key)
    assert old["lookups"] > 0 and any(r["reason"].startswith("HLR") for r in old["rejects"])
    assert new == old


def test_lookups_that_alone_exceed_the_balance_are_refused_before_any_is_paid(
        tmp_path: Path, settings: Settings, redis_client: redis.Redis, client: InstasentClient,
        sandbox: SandboxHandle) -> None:
    from dispatcher.errors import BudgetExceeded

    path = messy_list(tmp_path / "list.csv", n=600)
    sandbox.reset(balance=1.0)
    with pytest.raises(BudgetExceeded, match="HLR lookups alone"):
        preflight(path, PreflightOptions(text="Hola {name}", sender="Shop", country="ES", hlr=True),
                  settings=settings, redis=redis_client, client=client, chunk_rows=100)
    assert sandbox.stats().get("lookups", 0) == 0
    assert not list(redis_client.scan_iter(f"{settings.key_prefix}:hlr:*"))


def test_chunks_stream_the_same_messages_the_whole_file_path_keeps(
        tmp_path: Path, settings: Settings, redis_client: redis.Redis, client: InstasentClient) -> None:
    path = messy_list(tmp_path / "list.csv")
    opts = PreflightOptions(text="Hola {name}", sender="Shop", country="ES", hlr=False)
    old = run_preflight(path, opts, settings=settings, redis=redis_client, client=client)
    streamed = StreamedPreflight(path, opts, settings=settings, redis=redis_client, client=client, chunk_rows=333)
    streamed.count()
    tables = [chunk.messages for chunk in streamed.chunks()]
    frame = pa.concat_tables(tables).to_pandas().astype(old.messages.dtypes.to_dict())
    pd.testing.assert_frame_equal(frame.reset_index(drop=True), old.messages.reset_index(drop=True))


def test_seen_numbers_find_every_duplicate_across_chunks_exactly() -> None:
    rng = np.random.default_rng(5)
    values = rng.integers(34_600_000_000, 34_600_050_000, size=40_000)
    seen = SeenNumbers()
    got = np.concatenate([seen.first_sightings(pa.array([f"+{v}" for v in values[i:i + 777]]))
                          for i in range(0, len(values), 777)])
    assert (got == ~pd.Series(values).duplicated().to_numpy()).all()
    assert seen.count == len(set(values.tolist())) and seen.nbytes == 8 * seen.count


def test_rejects_spill_to_disk_and_write_as_csv_or_parquet(tmp_path: Path) -> None:
    spill = RejectSpill()
    rejects = [Reject(i + 2, f"=bad{i}", "not a phone number") for i in range(1234)]
    spill.extend(rejects[:1000])
    spill.extend(rejects[1000:])
    assert len(spill) == 1234 and list(spill) == rejects and spill[:3] == rejects[:3] and spill[1233] == rejects[-1]
    assert write_rejects(tmp_path / "r.csv", spill) == 1234
    csv_rows = pd.read_csv(tmp_path / "r.csv", encoding="utf-8-sig", dtype=str)
    assert csv_rows["value"].iloc[0] == "'=bad0"  # spreadsheet-safe
    assert write_rejects(tmp_path / "r.parquet", spill) == 1234
    parquet = pd.read_parquet(tmp_path / "r.parquet")
    assert list(parquet["row"]) == [r.row for r in rejects] and parquet["value"].iloc[0] == "=bad0"


def test_a_permutation_of_every_row_is_taken_not_returned_as_it_was() -> None:
    from dispatcher.preflight.arrow import subset

    values = pa.array(["a", "b", "c", "d"])
    assert subset(values, np.array([0, 2, 1, 3])).to_pylist() == ["a", "c", "b", "d"]
    assert subset(values, np.arange(4)) is values


def test_hlr_on_auto_is_known_to_look_nothing_up_only_with_nobody_to_ask_and_a_first_chunk_not_all_cached(
        tmp_path: Path, settings: Settings, redis_client: redis.Redis, client: InstasentClient) -> None:
    path = tmp_path / "list.csv"
    path.write_text("phone,name\n" + "".join(f"6{10_000_000 + k:08d},x\n" for k in range(300)))
    cache = HlrCache(redis_client, Keys(settings.key_prefix), settings.hlr_cache_ttl_s)
    cache.put_many({f"+346{10_000_000 + k:08d}": HlrAnswer("valid") for k in range(100)})  # rows 2 to 101 only

    def declined(first_rows: int, hlr: bool | None = None, confirm: Any = None) -> bool:
        options = PreflightOptions(text="Hola {name}", sender="Shop", country="ES", hlr=hlr)
        return StreamedPreflight(path, options, settings=settings, redis=redis_client, client=client,
                                 chunk_rows=1000, confirm=confirm).lookups_declined(first_rows)

    assert declined(200) and not declined(100)  # the first 100 numbers are all cached: it might be free
    assert not declined(200, hlr=False) and not declined(200, hlr=True)
    assert not declined(200, confirm=lambda estimate: False)  # someone may say yes: count first
