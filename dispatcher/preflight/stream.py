"""The preflight of a file of any size: the steps of :mod:`dispatcher.preflight.check`, one chunk at a time.

Every chunk goes through the same steps in the same order (per row, duplicates, suppression,
prices, HLR), so the totals and the rejects are those of a preflight that holds the whole list
(``bench/whole_list.py``, against which the tests check them) on the same file. What changes is
what is held: duplicates are found across the whole file by
:class:`~dispatcher.preflight.dedup.SeenNumbers` (8 bytes per kept number), rejects go to a
temporary file (:class:`~dispatcher.preflight.spill.RejectSpill`) and each chunk's messages are
handed on (to be stored, for ``submit``) and dropped. Memory is then one or two chunks plus the
seen numbers, whatever the length of the file.

:meth:`StreamedPreflight.count` is the counting pass: it reads the whole file, keeps no
messages, and answers the :class:`~dispatcher.preflight.result.PreflightResult` the budget guard
judges. With HLR on it first probes the cache over the whole file, so lookups that alone would
exceed the balance or ``max_cost`` are refused before any is paid for, as before.
:meth:`StreamedPreflight.chunks` then streams the priced messages chunk by chunk (HLR answers come
from the cache the count filled). Without HLR (or with HLR on auto when
:meth:`StreamedPreflight.lookups_declined`: the chunks then only probe the cache), ``submit`` may
skip the counting pass:
:meth:`StreamedPreflight.bound` bounds the cost from a fast read (:mod:`dispatcher.preflight.bound`)
and, when that fits the budget, :meth:`StreamedPreflight.chunks` is the only full pass; its
:class:`Totals` give the same :meth:`StreamedPreflight.result` as :meth:`StreamedPreflight.count`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import redis

from dispatcher.errors import InputError
from dispatcher.keys import Keys
from dispatcher.preflight import fileformat, loader
from dispatcher.preflight.bound import CostBound, cost_bound
from dispatcher.preflight.check import EMPTY_VALUE_PREFIX, PreflightClient, Pricing
from dispatcher.preflight.dedup import SeenNumbers
from dispatcher.preflight.hlr import HlrCache, Progress, check_numbers
from dispatcher.preflight.insight import Insight
from dispatcher.preflight.lookups import Confirm, HlrStep, LookupEstimate
from dispatcher.preflight.phones import Phone
from dispatcher.preflight.pricing import PriceList
from dispatcher.preflight.rejects import Reject
from dispatcher.preflight.result import CountrySummary, PreflightOptions, PreflightResult
from dispatcher.preflight.rows import KEPT_SCHEMA, Judged, judge_chunk, plan_columns
from dispatcher.preflight.spill import RejectSpill
from dispatcher.preflight.suppression import SuppressionList
from dispatcher.schema.names import MESSAGE_COLUMNS
from dispatcher.settings import Settings

#: How a pass treats HLR: not at all, only asking the cache (to price the lookups), or looking up.
HlrMode = Literal["off", "probe", "lookup"]

#: Chunks judged at once. One: a second thread saves a third of the time but adds ~100 MB of
#: transient memory (the phone rules' regexes are compiled per call), which is what this path saves.
STREAM_WORKERS = 1
#: :func:`dispatcher.sending.submission.preflight`'s chunks and threads: two threads on chunks of
#: 40,000 rows take the same peak memory as one thread on 100,000 (two chunks in flight) and a
#: third less time (1M rows here: 2.2-2.3 s and 355-362 MB, against 3.4-3.5 s and 372-378 MB).
PREFLIGHT_CHUNK_ROWS, PREFLIGHT_WORKERS = 40_000, 2

MESSAGE_SCHEMA = pa.schema([*(KEPT_SCHEMA.field(name) for name in MESSAGE_COLUMNS if name != "price"),
                            pa.field("price", pa.float64())])


@dataclass(slots=True)
class Priced:
    """One chunk after every step: ``messages`` (columns of
    :data:`~dispatcher.schema.names.MESSAGE_COLUMNS`, file order) and ``rejects`` (row order), with
    the chunk's counts."""

    rows: int
    messages: pa.Table
    rejects: list[Reject]
    duplicates: int = 0
    suppressed: int = 0
    lookups: dict[str, int] = field(default_factory=dict)
    lookups_cached: int = 0
    #: Lookups this chunk still needs, per country (``probe`` mode only).
    missing: dict[str, int] = field(default_factory=dict)

    @property
    def last_row(self) -> int:
        """The highest spreadsheet row this chunk accounts for (0 when it has none)."""
        rows = self.messages.column("row")
        top = int(pc.max(rows).as_py() or 0) if len(rows) else 0
        return max([top, *(r.row for r in self.rejects[-1:])])


@dataclass(slots=True)
class Totals:
    """The counts of every chunk so far."""

    rows: int = 0
    duplicates: int = 0
    suppressed: int = 0
    parts: int = 0
    unicode: int = 0
    messages: int = 0
    message_cost: float = 0.0
    by_country: dict[str, list[float]] = field(default_factory=dict)  # country -> [messages, parts, cost]
    lookups: dict[str, int] = field(default_factory=dict)
    lookups_cached: int = 0
    missing: dict[str, int] = field(default_factory=dict)
    empty_values: int = 0
    rejected: int = 0
    #: The preview, the characters that force Unicode and the parts histogram (see ``insight``).
    insight: Insight = field(default_factory=Insight)

    def add(self, chunk: Priced) -> None:
        """Count one chunk."""
        self.rows += chunk.rows
        self.rejected += len(chunk.rejects)
        self.empty_values += sum(r.reason.startswith(EMPTY_VALUE_PREFIX) for r in chunk.rejects)
        self.duplicates += chunk.duplicates
        self.suppressed += chunk.suppressed
        self.lookups_cached += chunk.lookups_cached
        for name, counts in (("lookups", chunk.lookups), ("missing", chunk.missing)):
            mine = getattr(self, name)
            for country, n in counts.items():
                mine[country] = mine.get(country, 0) + n
        table = chunk.messages
        if not table.num_rows:
            return
        self.messages += table.num_rows
        self.insight.add(table)
        self.parts += int(pc.sum(table.column("parts")).as_py() or 0)
        self.unicode += int(pc.sum(table.column("unicode")).as_py() or 0)
        grouped = table.group_by("country").aggregate([("row", "count"), ("parts", "sum"), ("price", "sum")])
        for country, count, parts, cost in zip(*(grouped.column(c).to_pylist() for c in
                                                 ("country", "row_count", "parts_sum", "price_sum")), strict=True):
            entry = self.by_country.setdefault(country, [0, 0, 0.0])
            entry[0] += count
            entry[1] += parts
            entry[2] += cost
        self.message_cost = sum(entry[2] for entry in self.by_country.values())


class StreamedPreflight:
    """One recipient file, preflighted in chunks; see the module docstring.

    Raises (from the constructor): InputError for a bad file or options; DispatcherError when
    prices or the balance cannot be read.
    """

    def __init__(self, path: str | Path, options: PreflightOptions, *, settings: Settings, redis: redis.Redis,
                 client: PreflightClient, progress: Progress | None = None,
                 chunk_rows: int = loader.DEFAULT_CHUNK_ROWS, confirm: Confirm | None = None) -> None:
        self.options = options.validated()
        self.fmt = fileformat.sniff(path)
        self.plan = plan_columns(self.fmt, self.options)
        self.settings, self.redis, self.client, self.progress = settings, redis, client, progress
        self.chunk_rows = chunk_rows
        self.keys = Keys(settings.key_prefix)
        self.pricing = Pricing.fetch(client, redis, self.keys, lookups=self.options.hlr is not False,
                                     account=self.options.account)
        # The account's own list (its replies' STOPs) and the global one.
        self.suppression = SuppressionList(redis, self.keys, account=self.options.account)
        self.cache = HlrCache(redis, self.keys, settings.hlr_cache_ttl_s)
        currency = self.pricing.currency
        self.step = HlrStep(hlr=self.options.hlr, prices=self.pricing.lookup or PriceList({}, currency),
                            account=self.pricing.account, currency=currency, max_cost=self.options.max_cost,
                            cache=self.cache, client=client, concurrency=settings.hlr_concurrency,
                            progress=progress, confirm=confirm)
        #: Whether the counting pass had the numbers looked up (the storing pass then reads the cache).
        self.hlr_done = False
        #: Whether the file needs Python's tolerant CSV reader (learnt by the first pass).
        self.tolerant = False
        #: HLR on auto that surely looks nothing up (:meth:`lookups_declined`): the chunks only ask
        #: the cache, and :meth:`result` gives the estimate the counting pass would.
        self.probing = False

    # -- passes ------------------------------------------------------------------------------
    def count(self, workers: int = STREAM_WORKERS) -> PreflightResult:
        """The counting pass: every total and reject, no message kept (``workers`` chunks judged at
        once: 2 is faster and costs ~100 MB more).

        Raises:
            InputError: when the file has no data rows.
            BudgetExceeded: when the HLR lookups alone would exceed the balance or ``max_cost``.
        """
        estimate = self._estimate(workers) if self.options.hlr is not False else None
        totals, rejects = self._totals("lookup" if self.hlr_done else "off", workers, keep_rejects=True)
        return self.result(totals, rejects, estimate)

    def _estimate(self, workers: int) -> LookupEstimate | None:
        """The HLR step's decision over the whole file, as :class:`~dispatcher.preflight.lookups.HlrStep`
        makes it: a pass that only asks the cache prices the lookups, then they are done when asked
        for (or confirmed), after the guard on lookups plus messages; nothing is paid before.

        Raises:
            BudgetExceeded: when lookups asked for, with the messages, exceed the balance or ``max_cost``.
        """
        probe, _ = self._totals("probe", workers, keep_rejects=False)
        estimate = self._estimate_of(probe)
        if estimate is None:
            return None
        if self.options.hlr is None and estimate.to_pay and not self.step.confirmed(estimate, probe.message_cost):
            return estimate
        self.step.guard(estimate.cost, estimate.to_pay, probe.message_cost)
        self.hlr_done = True
        return estimate

    def _estimate_of(self, probe: Totals) -> LookupEstimate | None:
        """The lookups of a ``probe`` pass's totals, at the lookup prices (None: no message)."""
        if probe.messages == 0:
            return None
        prices = self.step.prices
        cost = sum(n * (prices.get(country) or 0.0) for country, n in probe.missing.items())
        return LookupEstimate(probe.messages, probe.lookups_cached, cost, self.pricing.currency)

    def lookups_declined(self, first_rows: int) -> bool:
        """Whether HLR on auto (``hlr`` None) surely looks nothing up, judged from the file's first
        chunk (``first_rows`` rows) alone: nobody can be asked (no ``confirm``) and one of its
        numbers is not in the cache, so the lookups are not all free. Only the cache is read.

        Raises:
            InputError: when the file cannot be read as its format says.
        """
        if self.options.hlr is not None or self.step.confirm is not None:
            return False
        while True:
            first = self._pass("probe", 1, first_rows)
            try:
                chunk = next(first, None)
                return chunk is not None and bool(chunk.missing)
            except loader.RaggedRows:
                self.tolerant = True
            finally:
                first.close()

    def bound(self) -> CostBound:
        """An upper bound of the messages' cost, from one fast read that keeps no rows
        (:mod:`dispatcher.preflight.bound`); lookups are not in it.

        Raises:
            InputError: when the file cannot be read as its format says.
        """
        return cost_bound(self.fmt, self.plan, self.pricing.sms)

    def chunks(self, hlr: HlrMode | None = None, workers: int = STREAM_WORKERS,
               first_rows: int | None = None) -> Iterator[Priced]:
        """Every chunk, priced, in file order (``workers`` chunks judged at once; the first of
        ``first_rows`` rows when given, so that it is ready sooner).

        Raises:
            RaggedRows: (:mod:`dispatcher.preflight.loader`) when the file turns out to need the
                tolerant reader (:meth:`count` learns that first): set :attr:`tolerant`, read again.
        """
        yield from self._pass(hlr or self.hlr_mode, workers, first_rows)

    @property
    def hlr_mode(self) -> HlrMode:
        """How the storing pass treats HLR: as the counting pass decided, or only probing the cache
        (:attr:`probing`), or not at all."""
        return "lookup" if self.hlr_done else "probe" if self.probing else "off"

    def _totals(self, mode: HlrMode, workers: int, *, keep_rejects: bool) -> tuple[Totals, RejectSpill]:
        """Run one whole pass and count it (starting over with the tolerant reader if needed)."""
        while True:
            totals, rejects = Totals(), RejectSpill()
            try:
                for chunk in self._pass(mode, workers):
                    totals.add(chunk)
                    if keep_rejects:
                        rejects.extend(chunk.rejects)
                return totals, rejects
            except loader.RaggedRows:
                rejects.close()
                self.tolerant = True

    def _pass(self, mode: HlrMode, workers: int = STREAM_WORKERS,
              first_rows: int | None = None) -> Generator[Priced, None, None]:
        memo: dict[tuple[str, str | None], Phone] = {}
        seen = SeenNumbers()
        judged = loader.stream(self.fmt, lambda chunk: judge_chunk(chunk, self.plan, memo),
                               chunk_rows=self.chunk_rows, workers=workers, tolerant=self.tolerant,
                               first_rows=first_rows)
        for one in judged:
            yield self._price(one, seen, mode)
            # mimalloc keeps freed pages for reuse; a chunk's temporaries would add 100+ MB of RSS.
            pa.default_memory_pool().release_unused()

    # -- one chunk ---------------------------------------------------------------------------
    def _price(self, judged: Judged, seen: SeenNumbers, mode: HlrMode) -> Priced:
        """Steps 3 to 6 of the preflight on one judged chunk."""
        kept = judged.kept
        to, country = kept.column("to").combine_chunks(), kept.column("country").combine_chunks()
        alive = seen.first_sightings(to)
        duplicates = int((~alive).sum())
        suppressed = _drop(alive, self.suppression.flags(to.filter(pa.array(alive))))
        per_part = self.pricing.sms.lookup(country)
        countries = country.to_pylist() if kept.num_rows else []
        rejects = list(judged.rejects)
        rejects += _reject(kept, alive, np.isnan(per_part), lambda i: f"no price for destination {countries[i]}")
        out = Priced(rows=judged.rows, messages=MESSAGE_SCHEMA.empty_table(), rejects=rejects,
                     duplicates=duplicates, suppressed=suppressed)
        if mode != "off" and alive.any():
            self._hlr(kept, alive, countries, mode, out)
        final = kept.filter(pa.array(alive)) if not alive.all() else kept
        price = final.column("parts").to_numpy() * per_part[alive]
        out.messages = final.append_column("price", pa.array(price, pa.float64())).select(list(MESSAGE_COLUMNS))
        out.rejects.sort(key=lambda r: r.row)
        return out

    def _hlr(self, kept: pa.Table, alive: np.ndarray, countries: list[str], mode: HlrMode, out: Priced) -> None:
        """Probe the cache (``probe``) or get every answer and reject the unusable numbers."""
        idx = np.flatnonzero(alive)
        numbers = kept.column("to").take(pa.array(idx)).to_pylist()
        country_of = {number: countries[i] for number, i in zip(numbers, idx.tolist(), strict=True)}
        if mode == "probe":
            cached = self.cache.get_many(numbers)
            out.lookups_cached = len(cached)
            for number in numbers:
                if number not in cached:
                    out.missing[country_of[number]] = out.missing.get(country_of[number], 0) + 1
            return
        outcome = check_numbers(numbers, client=self.client, cache=self.cache,
                                concurrency=self.settings.hlr_concurrency, progress=self.progress)
        for number in outcome.looked_up:
            out.lookups[country_of[number]] = out.lookups.get(country_of[number], 0) + 1
        out.lookups_cached = outcome.cached
        bad = np.zeros(len(alive), dtype=bool)
        bad[idx] = [not outcome.answers[n].usable for n in numbers]
        position = dict(zip(idx.tolist(), numbers, strict=True))
        out.rejects += _reject(kept, alive, bad, lambda i: outcome.answers[position[i]].reason)

    def result(self, totals: Totals, rejects: RejectSpill | None = None,
               estimate: LookupEstimate | None = None) -> PreflightResult:
        """The preflight's answer from a whole pass's ``totals`` and ``rejects`` (None: an empty
        list, when only the figures are wanted); a :attr:`probing` pass's totals give the lookups'
        ``estimate`` themselves.

        Raises:
            InputError: when the file has no data rows.
        """
        if totals.rows == 0:
            raise InputError(f"{self.fmt.path.name} has no data rows, only a header.")
        probed = self.probing and not self.hlr_done
        if probed and estimate is None:
            estimate = self._estimate_of(totals)
        lookup_prices = self.pricing.lookup
        lookup_costs = {c: n * ((lookup_prices.get(c) if lookup_prices else None) or 0.0)
                        for c, n in totals.lookups.items()}
        by_country = {c: CountrySummary(messages=int(m), parts=int(p), cost=float(cost))
                      for c, (m, p, cost) in totals.by_country.items()}
        for country, n in totals.lookups.items():
            base = by_country.get(country) or CountrySummary(messages=0, parts=0, cost=0.0)
            by_country[country] = CountrySummary(messages=base.messages, parts=base.parts,
                                                 cost=base.cost + lookup_costs[country], lookups=n)
        return PreflightResult(
            file=str(self.fmt.path), source=self.fmt.label, phone_column=self.plan.phone, rows=totals.rows,
            valid=totals.messages, rejected=totals.rejected, duplicates=totals.duplicates,
            suppressed=totals.suppressed, parts=totals.parts, unicode=totals.unicode,
            message_cost=totals.message_cost, lookups=sum(totals.lookups.values()),
            # As the counting pass's: cached answers that were not used are only in the estimate.
            lookups_cached=0 if probed else totals.lookups_cached, lookup_cost=sum(lookup_costs.values()),
            currency=self.pricing.currency, balance=self.pricing.account.available, by_country=by_country,
            rejects=rejects if rejects is not None else [], messages=empty_messages(), empty_values=totals.empty_values,
            hlr_done=self.hlr_done, hlr_estimate=estimate, insight=totals.insight.to_json())


def _drop(alive: np.ndarray, flags_of_alive: np.ndarray) -> int:
    """Clear the alive rows flagged (``flags_of_alive`` has one entry per alive row); returns how many."""
    idx = np.flatnonzero(alive)
    hit = idx[flags_of_alive]
    alive[hit] = False
    return len(hit)


def _reject(kept: pa.Table, alive: np.ndarray, mask: np.ndarray, reason: Callable[[int], str]) -> list[Reject]:
    """Take the alive rows set in ``mask`` out as rejects with ``reason(index)``."""
    hit = np.flatnonzero(mask & alive)
    alive[hit] = False
    if len(hit) == 0:
        return []
    take = pa.array(hit)
    rows = kept.column("row").take(take).to_pylist()
    values = kept.column("to").take(take).to_pylist()
    return [Reject(int(row), value, reason(int(i))) for i, row, value in zip(hit, rows, values, strict=True)]


def empty_messages() -> pd.DataFrame:
    """The (empty) ``messages`` of a streamed result: the messages went chunk by chunk."""
    frame = MESSAGE_SCHEMA.empty_table().to_pandas()
    return frame.astype({"row": "int64", "parts": "int64", "unicode": "bool", "price": "float64"})

