"""The whole-list paths, which only benchmarks and tests use: a preflight that holds the whole list
in memory (:func:`run_preflight`), and campaigns stored from prepared messages in one piece
(:func:`submit_prepared`, :func:`submit_preflight`).

Every command goes through :mod:`dispatcher.sending.submission` (a streamed preflight, then the
list stored chunk by chunk while it sends); ``bench_scale`` measures that path beside these, and
the tests use them as the reference the streamed totals must equal and to have a campaign to send
without a file.

Import it as ``bench.whole_list`` from the repository root (the tests), or as ``whole_list`` from a
script in this folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import redis

from dispatcher.errors import InputError
from dispatcher.keys import Keys
from dispatcher.preflight import fileformat, loader
from dispatcher.preflight.check import EMPTY_VALUE_PREFIX, PreflightClient, Pricing
from dispatcher.preflight.hlr import HlrCache, Progress
from dispatcher.preflight.lookups import Confirm, HlrStep, LookupSummary
from dispatcher.preflight.phones import Phone
from dispatcher.preflight.pricing import PriceList
from dispatcher.preflight.rejects import Reject
from dispatcher.preflight.result import CountrySummary, PreflightOptions, PreflightResult, check_budget
from dispatcher.preflight.rows import KEPT_SCHEMA, Plan, judge_chunk, plan_columns
from dispatcher.preflight.suppression import SuppressionList
from dispatcher.schema.names import MESSAGE_COLUMNS
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.enqueuer import Enqueuer
from dispatcher.sending.store import CampaignStore
from dispatcher.sending.windows import Window, zones_for
from dispatcher.settings import Settings

#: Chunks judged at once (threads: the work is in pyarrow kernels, which release the GIL).
SCAN_WORKERS = 2


def run_preflight(path: str | Path, options: PreflightOptions, *, settings: Settings, redis: redis.Redis,
                  client: PreflightClient, progress: Progress | None = None,
                  chunk_rows: int = loader.DEFAULT_CHUNK_ROWS, confirm: Confirm | None = None) -> PreflightResult:
    """Preflight the recipient file at ``path``, holding the whole list (``messages``) in memory.

    No command uses it (they stream: :func:`dispatcher.sending.submission.preflight`); it is the
    whole-list reference the streamed totals are tested against and ``bench_scale`` measures beside.
    HLR lookups are paid for only with ``options.hlr`` True, or, when it is None, if they cost
    nothing or ``confirm`` (shown their estimate) says yes (see :mod:`dispatcher.preflight.lookups`).

    Raises:
        InputError: a file or option the user must fix (exit code 2).
        BudgetExceeded: when lookups asked for, with the messages, would exceed the balance or ``max_cost``.
        DispatcherError: Instasent or Redis trouble, as the client and store raise it.
    """
    options = options.validated()
    fmt = fileformat.sniff(path)
    plan = plan_columns(fmt, options)
    rows, rejects, tables = _read(fmt, plan, chunk_rows)
    keys = Keys(settings.key_prefix)
    numbers = _Numbers.of(tables)
    duplicates = numbers.drop(~_first_occurrences(numbers.to))
    suppression = SuppressionList(redis, keys)
    suppression_version = suppression.version()  # before the check: a later addition changes it
    suppressed = numbers.drop(_suppressed(numbers, suppression))
    pricing = Pricing.fetch(client, redis, keys, lookups=options.hlr is not False)
    per_part = pricing.sms.lookup(numbers.country_array)
    rejects += numbers.reject(np.isnan(per_part), lambda i: f"no price for destination {numbers.country[i]}")
    step = HlrStep(hlr=options.hlr, prices=pricing.lookup or PriceList({}, pricing.currency),
                   account=pricing.account, currency=pricing.currency, max_cost=options.max_cost,
                   cache=HlrCache(redis, keys, settings.hlr_cache_ttl_s), client=client,
                   concurrency=settings.hlr_concurrency, progress=progress, confirm=confirm)
    lookups = _hlr(numbers, rejects, step, per_part)
    final = _filter_tables(tables, numbers.alive)
    price = final.column("parts").to_numpy() * per_part[numbers.alive]
    final = final.append_column("price", pa.array(price, pa.float64()))
    rejects.sort(key=lambda r: r.row)
    result = _result(fmt, plan, rows, rejects, duplicates, suppressed, final, lookups, pricing)
    result.suppression_version = suppression_version
    return result


def _read(fmt: fileformat.FileFormat, plan: Plan, chunk_rows: int) -> tuple[int, list[Reject], list[pa.Table]]:
    """Judge every row of the file: ``(data rows, rejects, kept tables)``.

    Raises:
        InputError: when the file has no data rows.
    """
    memo: dict[tuple[str, str | None], Phone] = {}
    chunks = loader.scan(fmt, lambda chunk: judge_chunk(chunk, plan, memo), chunk_rows=chunk_rows,
                         workers=SCAN_WORKERS)
    rows = sum(c.rows for c in chunks)
    if rows == 0:
        raise InputError(f"{fmt.path.name} has no data rows, only a header.")
    return rows, [r for c in chunks for r in c.rejects], [c.kept for c in chunks]




class _Numbers:
    """The kept rows' numbers, countries and row numbers, and which rows are still ``alive``.

    The later steps (duplicates, suppression, prices, HLR) only narrow ``alive``; the wide table
    (texts, senders) is filtered once at the end.
    """

    def __init__(self, row: np.ndarray, to: pa.Array, country: pa.Array, parts: np.ndarray | None = None) -> None:
        self.row = row
        self.to = to
        self.parts = parts if parts is not None else np.ones(len(row), dtype=np.int64)
        self.country_array = country
        self.alive = np.ones(len(row), dtype=bool)
        self._country: list[str] | None = None

    @classmethod
    def of(cls, tables: list[pa.Table]) -> _Numbers:
        """The narrow columns of the kept tables, concatenated (the texts are not copied)."""

        def column(name: str) -> pa.Array:
            return pa.concat_arrays([c for t in tables for c in t.column(name).chunks]) if tables else \
                pa.array([], KEPT_SCHEMA.field(name).type)

        return cls(column("row").to_numpy(zero_copy_only=False), column("to"), column("country"),
                   column("parts").to_numpy(zero_copy_only=False))

    @property
    def country(self) -> list[str]:
        """Countries as a Python list (built on first use)."""
        if self._country is None:
            self._country = self.country_array.to_pylist()
        return self._country

    def drop(self, mask: np.ndarray) -> int:
        """Drop the alive rows set in ``mask``; returns how many."""
        hit = mask & self.alive
        self.alive &= ~hit
        return int(hit.sum())

    def reject(self, mask: np.ndarray, reason: Callable[[int], str]) -> list[Reject]:
        """Drop the alive rows set in ``mask`` as rejects with ``reason(index)``."""
        hit = np.flatnonzero(mask & self.alive)
        self.alive[hit] = False
        values = self.to.take(pa.array(hit)).to_pylist()
        return [Reject(int(self.row[i]), value, reason(int(i))) for i, value in zip(hit, values, strict=True)]


def _filter_tables(tables: list[pa.Table], keep: np.ndarray) -> pa.Table:
    """Concatenate ``tables`` keeping the rows set in ``keep``; each input table is released as soon
    as it is filtered (``tables`` is emptied), so at most one extra chunk is held at a time."""
    out = []
    start = 0
    while tables:
        table = tables.pop(0)
        mask = keep[start:start + table.num_rows]
        start += table.num_rows
        out.append(table if mask.all() else table.filter(pa.array(mask)))
        del table
    return pa.concat_tables(out) if out else KEPT_SCHEMA.empty_table()


def _first_occurrences(to: pa.Array) -> np.ndarray:
    """True for the first row of each E.164 number."""
    if len(to) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(~pd.Series(_number_keys(to)).duplicated(keep="first").to_numpy(), dtype=bool)


def _number_keys(e164: pa.Array) -> np.ndarray:
    """E.164 numbers as integers (fast to hash): the digits after ``+`` never start with 0, so equal
    integers mean equal numbers. Falls back to the strings when a number is too long for int64."""
    if pc.max(pc.utf8_length(e164)).as_py() > 19:
        return np.asarray(e164.to_pylist(), dtype=object)
    return np.asarray(pc.cast(pc.utf8_slice_codeunits(e164, 1), pa.int64()).to_numpy(zero_copy_only=False))


def _suppressed(numbers: _Numbers, suppression: SuppressionList) -> np.ndarray:
    """Mask of the alive rows whose number is on the suppression list."""
    idx = np.flatnonzero(numbers.alive)
    mask = np.zeros(len(numbers.alive), dtype=bool)
    if len(idx):
        mask[idx] = suppression.flags(numbers.to.take(pa.array(idx)))
    return mask


def _hlr(numbers: _Numbers, rejects: list[Reject], step: HlrStep, per_part: np.ndarray) -> LookupSummary:
    """Run the HLR step on the alive numbers; ``invalid``/``unreachable`` ones become rejects."""
    idx = np.flatnonzero(numbers.alive)
    alive = numbers.to.take(pa.array(idx)).to_pylist()
    countries = dict(zip(alive, numbers.country_array.take(pa.array(idx)).to_pylist(), strict=True))
    message_cost = float(np.sum(numbers.parts[idx] * per_part[idx]))
    summary = step.run(alive, countries, message_cost)
    if summary.rejected:
        bad = np.zeros(len(numbers.alive), dtype=bool)
        bad[idx] = [n in summary.rejected for n in alive]
        position = dict(zip(idx.tolist(), alive, strict=True))
        rejects += numbers.reject(bad, lambda i: summary.rejected[position[i]])
    return summary


def _result(fmt: fileformat.FileFormat, plan: Plan, rows: int, rejects: list[Reject], duplicates: int,
            suppressed: int, kept: pa.Table, lookups: LookupSummary, pricing: Pricing) -> PreflightResult:
    messages = _messages_frame(kept)
    by_country = _by_country(kept, lookups)
    return PreflightResult(
        file=str(fmt.path), source=fmt.label, phone_column=plan.phone, rows=rows, valid=kept.num_rows,
        rejected=len(rejects), duplicates=duplicates, suppressed=suppressed,
        parts=int(pc.sum(kept.column("parts")).as_py() or 0), unicode=int(pc.sum(kept.column("unicode")).as_py() or 0),
        message_cost=float(pc.sum(kept.column("price")).as_py() or 0.0), lookups=lookups.count,
        lookups_cached=lookups.cached, lookup_cost=lookups.cost, currency=pricing.currency,
        balance=pricing.account.available,
        by_country=by_country, rejects=rejects, messages=messages,
        empty_values=sum(r.reason.startswith(EMPTY_VALUE_PREFIX) for r in rejects), hlr_done=lookups.done,
        hlr_estimate=lookups.estimate,
    )


def _messages_frame(kept: pa.Table) -> pd.DataFrame:
    frame = kept.select(list(MESSAGE_COLUMNS)).to_pandas()
    return frame.astype({"row": "int64", "parts": "int64", "unicode": "bool", "price": "float64"})


def _by_country(kept: pa.Table, lookups: LookupSummary) -> dict[str, CountrySummary]:
    out: dict[str, CountrySummary] = {}
    if kept.num_rows:
        grouped = kept.group_by("country").aggregate([("row", "count"), ("parts", "sum"), ("price", "sum")])
        for country, count, parts, cost in zip(*(grouped.column(c).to_pylist() for c in
                                                 ("country", "row_count", "parts_sum", "price_sum")), strict=True):
            out[country] = CountrySummary(messages=int(count), parts=int(parts), cost=float(cost))
    return out | {
        country: _add_lookups(out.get(country), count, lookups.cost_by_country.get(country, 0.0))
        for country, count in lookups.by_country.items()
    }


def _add_lookups(summary: CountrySummary | None, count: int, cost: float) -> CountrySummary:
    base = summary or CountrySummary(messages=0, parts=0, cost=0.0)
    return CountrySummary(messages=base.messages, parts=base.parts, cost=base.cost + cost, lookups=count)


def submit_prepared(store: CampaignStore, ops: BatchOps, enqueuer: Enqueuer, settings: Settings, *, name: str,
           messages: pd.DataFrame, cost: float = 0.0, currency: str = "", options: dict[str, Any] | None = None,
           preflight: dict[str, Any] | None = None, rejects: Sequence[dict[str, Any]] = (),
           send_window: Window | None = None, expire_after_s: float | None = None,
           now: float | None = None, suppression_version: int | None = None, priority: str = "normal") -> str:
    """Store a campaign of prepared messages (a frame with the columns of
    :data:`~dispatcher.schema.names.MESSAGE_COLUMNS`, no preflight) and queue its first window
    of batches; returns the campaign id. Benchmarks and tests use it to have a campaign to send.

    ``suppression_version`` is the suppression list's version the messages were checked against
    (``PreflightResult.suppression_version``); without it every batch checks the list.

    With a ``send_window``, messages are grouped by their numbers' time zones so that every batch
    is homogeneous; ``expire_after_s`` (seconds from now) turns what is unsent by then ``expired``.
    ``priority`` (low, normal, high) weighs it in its lane (``dispatcher.sending.fairshare``).
    """
    zones = None
    if send_window is not None and len(messages):
        keys = [",".join(zones_for(to)) for to in messages["to"].tolist()]
        order = sorted(range(len(keys)), key=keys.__getitem__)  # stable: file order within a zone
        messages = messages.iloc[order].reset_index(drop=True)
        zones = [keys[i] for i in order]
    expires_at = (time.time() if now is None else now) + expire_after_s if expire_after_s else None
    campaign_id = store.create(name, messages, window=settings.effective_queue_window, cost=cost, currency=currency,
                       options=options, preflight=preflight, send_window=send_window, expires_at=expires_at,
                       zones=zones, suppression_version=suppression_version, priority=priority)
    store.store_rejects(campaign_id, rejects)
    enqueuer.enqueue(campaign_id, ops.reserve(campaign_id))
    return campaign_id


def submit_preflight(store: CampaignStore, ops: BatchOps, enqueuer: Enqueuer, settings: Settings, *,
                     result: PreflightResult, options: PreflightOptions, name: str,
                     send_window: Window | None = None, expire_after_s: float | None = None) -> str:
    """Submit what a whole-list preflight (``run_preflight``) accepted, after the same budget guard.

    No command takes this path (they stream: :func:`dispatcher.sending.submission.submit`); it is
    the whole-list baseline ``bench_scale`` measures the streamed path against.

    Raises:
        BudgetExceeded: when the cost exceeds the balance or ``options.max_cost``.
    """
    check_budget(result, options.max_cost)
    recorded_options = {"file": result.file, "text": options.text, "text_column": options.text_column,
                        "sender": options.sender, "country": options.country, "hlr": options.hlr}
    return submit_prepared(store, ops, enqueuer, settings, name=name, messages=result.messages, cost=result.cost,
                  currency=result.currency, options=recorded_options,
                  preflight={k: v for k, v in result.to_json().items() if k not in ("rejects", "by_country")},
                  rejects=[r.to_json() for r in result.rejects] if result.rejects else [],
                  send_window=send_window, expire_after_s=expire_after_s,
                  suppression_version=result.suppression_version)
