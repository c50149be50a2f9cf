"""The campaign preflight: from a recipient file to the exact list of messages, its cost and its rejects.

Steps, in order (each row is judged by the first step that drops it):

1. **Read** the file in chunks (:mod:`dispatcher.preflight.loader`); blank rows are skipped and not counted.
2. **Per row**: the phone number (:mod:`dispatcher.preflight.phones`, with ``--country`` or the row's country
   column as default region), the text (``--text`` template or ``--text-column``; empty is a
   reject), the sender (``from`` column or ``--from``, 1..11 characters), the parts and encoding
   (:func:`dispatcher.preflight.render.measure`); with ``--gsm-only`` a text that needs Unicode is a reject.
3. **Duplicates**: rows whose E.164 number an earlier kept row already has are dropped and
   *counted* (``duplicates``), not listed: the first row of each number wins.
4. **Suppression list**: suppressed numbers are dropped and *counted* (``suppressed``), not listed:
   they are a deliberate exclusion, not a problem with the file.
5. **Prices**: a destination without an SMS price is a reject (``no price for destination XX``).
6. **HLR** (unless ``hlr`` is off): one lookup per remaining number not in the cache; ``invalid``
   and ``unreachable`` numbers are rejects. Lookups are refused up front if they alone would
   exceed the balance or ``max_cost``.

So ``rows == valid + rejected + duplicates + suppressed`` and ``valid`` is the number of messages.
The balance is read before any lookup is paid for. :func:`check_budget` is the guard that refuses
a campaign costing more than the balance or ``max_cost``; the CLI calls it after showing the summary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import redis

from dispatcher.errors import BudgetExceeded, InputError
from dispatcher.instasent.models import Account
from dispatcher.keys import Keys
from dispatcher.preflight import loader, render
from dispatcher.preflight.hlr import HlrCache, LookupClient, Progress, check_numbers
from dispatcher.preflight.phones import Phone, is_region, normalise_many, parse_region, reason_unknown_country
from dispatcher.preflight.pricing import PriceClient, PriceList, balance, check_currency, price_list
from dispatcher.preflight.rejects import Reject
from dispatcher.preflight.suppression import SuppressionList
from dispatcher.settings import Settings

#: Chunks judged at once (threads: the work is in pyarrow kernels, which release the GIL).
SCAN_WORKERS = 2


class PreflightClient(LookupClient, PriceClient, Protocol):
    """The Instasent client calls the preflight makes."""


@dataclass(frozen=True, slots=True)
class PreflightOptions:
    """The ``dispatcher preflight`` options: exactly one of ``text`` (a ``{column}`` template) and
    ``text_column``; ``sender`` is ``--from``; ``country`` the default ISO region; ``max_cost`` in
    the account currency."""

    text: str | None = None
    text_column: str | None = None
    sender: str | None = None
    country: str | None = None
    phone_column: str | None = None
    hlr: bool = True
    gsm_only: bool = False
    max_cost: float | None = None

    def validated(self) -> PreflightOptions:
        """The options checked and normalised (country upper-cased, sender trimmed).

        Raises:
            InputError: for a missing or doubled text option, a bad country, sender or max cost.
        """
        if (self.text is None) == (self.text_column is None):
            raise InputError("give the message as --text 'Hello {name}' or --text-column COLUMN (one of them).")
        if self.text is not None:
            render.Template.parse(self.text)
        if self.max_cost is not None and not (math.isfinite(self.max_cost) and self.max_cost >= 0):
            raise InputError(f"--max-cost must be a number of at least 0, got {self.max_cost}.")
        return replace(self, country=parse_region(self.country), sender=render.check_sender(self.sender))


@dataclass(frozen=True, slots=True)
class CountrySummary:
    """Messages, SMS parts, lookups and cost (messages plus lookups) to one country."""

    messages: int
    parts: int
    cost: float
    lookups: int = 0

    def to_json(self) -> dict[str, Any]:
        """``{"messages", "parts", "cost", "lookups"}`` with the cost rounded to micro-units."""
        return {"messages": self.messages, "parts": self.parts, "cost": _round(self.cost), "lookups": self.lookups}


#: Columns of :attr:`PreflightResult.messages`, in order.
MESSAGE_COLUMNS = ("row", "to", "text", "sender", "parts", "unicode", "country", "price")


@dataclass(slots=True)
class PreflightResult:
    """Everything the preflight found out.

    ``messages`` holds one row per message to send, in file order, with the columns of
    :data:`MESSAGE_COLUMNS` (``price`` = parts x the country's price per part). ``valid`` is also
    the number of messages (:attr:`message_count`). Money is in ``currency``: ``cost`` is
    ``message_cost + lookup_cost``; ``balance`` is what the account had before any lookup.
    """

    file: str
    source: str
    phone_column: str
    rows: int
    valid: int
    rejected: int
    duplicates: int
    suppressed: int
    parts: int
    unicode: int
    message_cost: float
    lookups: int
    lookups_cached: int
    lookup_cost: float
    currency: str
    balance: float
    by_country: dict[str, CountrySummary]
    rejects: list[Reject]
    messages: pd.DataFrame = field(repr=False)

    @property
    def message_count(self) -> int:
        """Messages to send (equal to ``valid``)."""
        return self.valid

    @property
    def cost(self) -> float:
        """Total cost: messages plus the lookups paid for in this run."""
        return self.message_cost + self.lookup_cost

    def to_json(self) -> dict[str, Any]:
        """The ``dispatcher preflight --json`` object."""
        return {
            "file": self.file, "rows": self.rows, "valid": self.valid, "rejected": self.rejected,
            "duplicates": self.duplicates, "suppressed": self.suppressed, "messages": self.valid,
            "parts": self.parts, "unicode": self.unicode, "cost": _round(self.cost),
            "message_cost": _round(self.message_cost), "lookups": self.lookups,
            "lookups_cached": self.lookups_cached, "lookup_cost": _round(self.lookup_cost),
            "currency": self.currency, "balance": _round(self.balance),
            "by_country": {c: s.to_json() for c, s in sorted(self.by_country.items())},
            "rejects": [r.to_json() for r in self.rejects],
        }


def _round(amount: float) -> float:
    return round(float(amount), 6)


def money(amount: float, currency: str) -> str:
    """An amount for a sentence: at least 2 and at most 4 decimals, then the currency."""
    text = f"{amount:,.4f}".rstrip("0")
    if len(text.partition(".")[2]) < 2:
        text = f"{amount:,.2f}"
    return f"{text} {currency}".strip()


def check_budget(result: PreflightResult, max_cost: float | None = None) -> None:
    """Refuse a campaign that costs more than the balance or than ``max_cost``.

    Raises:
        BudgetExceeded: with one sentence giving both figures.
    """
    cost, currency = result.cost, result.currency
    if cost > result.balance + 1e-9:
        raise BudgetExceeded(f"the campaign would cost {money(cost, currency)} but the balance is only "
                             f"{money(result.balance, currency)}.")
    if max_cost is not None and cost > max_cost + 1e-9:
        raise BudgetExceeded(f"the campaign would cost {money(cost, currency)}, more than --max-cost "
                             f"{money(max_cost, currency)}.")


# -- the pipeline --------------------------------------------------------------------------------


def run_preflight(path: str | Path, options: PreflightOptions, *, settings: Settings, redis: redis.Redis,
                  client: PreflightClient, progress: Progress | None = None,
                  chunk_rows: int = loader.DEFAULT_CHUNK_ROWS) -> PreflightResult:
    """Preflight the recipient file at ``path``.

    Raises:
        InputError: a file or option the user must fix (exit code 2).
        BudgetExceeded: when the lookups alone would exceed the balance or ``max_cost``.
        DispatcherError: Instasent or Redis trouble, as the client and store raise it.
    """
    options = options.validated()
    fmt = loader.sniff(path)
    plan = _plan(fmt, options)
    rows, rejects, tables = _read(fmt, plan, chunk_rows)
    keys = Keys(settings.key_prefix)
    numbers = _Numbers.of(tables)
    duplicates = numbers.drop(~_first_occurrences(numbers.to))
    suppressed = numbers.drop(_suppressed(numbers, SuppressionList(redis, keys)))
    pricing = _Pricing.fetch(client, redis, keys, lookups=options.hlr)
    per_part = pricing.sms.lookup(numbers.country_array)
    rejects += numbers.reject(np.isnan(per_part), lambda i: f"no price for destination {numbers.country[i]}")
    lookups = _Lookups()
    if pricing.lookup is not None and numbers.alive.any():
        lookups = _hlr(numbers, rejects, pricing, options, settings, redis, client, progress)
    final = _filter_tables(tables, numbers.alive)
    price = final.column("parts").to_numpy() * per_part[numbers.alive]
    final = final.append_column("price", pa.array(price, pa.float64()))
    rejects.sort(key=lambda r: r.row)
    return _result(fmt, plan, rows, rejects, duplicates, suppressed, final, lookups, pricing)


def _read(fmt: loader.FileFormat, plan: _Plan, chunk_rows: int) -> tuple[int, list[Reject], list[pa.Table]]:
    """Judge every row of the file: ``(data rows, rejects, kept tables)``.

    Raises:
        InputError: when the file has no data rows.
    """
    memo: dict[tuple[str, str | None], Phone] = {}
    chunks = loader.scan(fmt, lambda chunk: _judge_chunk(chunk, plan, memo), chunk_rows=chunk_rows,
                         workers=SCAN_WORKERS)
    rows = sum(c.rows for c in chunks)
    if rows == 0:
        raise InputError(f"{fmt.path.name} has no data rows, only a header.")
    return rows, [r for c in chunks for r in c.rejects], [c.kept for c in chunks]


@dataclass(frozen=True, slots=True)
class _Pricing:
    """Price profiles and the balance, read before any lookup is paid for."""

    sms: PriceList
    lookup: PriceList | None
    account: Account

    @classmethod
    def fetch(cls, client: PreflightClient, redis_client: redis.Redis, keys: Keys, *, lookups: bool) -> _Pricing:
        """Read them (profiles through the cache).

        Raises:
            PermanentError: when the prices and the balance are in different currencies.
        """
        sms = price_list("sms", client, redis_client, keys)
        account = balance(client)
        lookup = price_list("lookup", client, redis_client, keys) if lookups else None
        check_currency(account, sms, *([lookup] if lookup is not None else []))
        return cls(sms=sms, lookup=lookup, account=account)

    @property
    def currency(self) -> str:
        """The account's currency (the price profiles' when the account does not say)."""
        return self.account.currency or self.sms.currency


@dataclass(frozen=True, slots=True)
class _Plan:
    """Which columns play which part, settled once from the header and the options."""

    phone: str
    country_column: str | None
    default_region: str | None
    sender_column: str | None
    default_sender: str | None
    template: render.Template | None
    mapping: dict[str, str]
    text_column: str | None
    gsm_only: bool


def _plan(fmt: loader.FileFormat, options: PreflightOptions) -> _Plan:
    phone = loader.require_column(fmt, options.phone_column, loader.PHONE_NAMES, "phone", "--phone-column")
    others = [c for c in fmt.columns if c != phone]
    country = loader.find_column(others, None, loader.COUNTRY_NAMES)
    sender = loader.find_column(others, None, loader.SENDER_NAMES)
    if sender is None and options.sender is None:
        raise InputError("no sender: give --from NAME (1..11 characters) or add a 'from' column.")
    template = render.Template.parse(options.text) if options.text is not None else None
    mapping = template.bind(fmt.columns) if template is not None else {}
    text_column = None
    if options.text_column is not None:
        text_column = loader.require_column(fmt, options.text_column, (), "text", "--text-column")
    return _Plan(phone=phone, country_column=country, default_region=options.country, sender_column=sender,
                 default_sender=options.sender, template=template, mapping=mapping, text_column=text_column,
                 gsm_only=options.gsm_only)


@dataclass(frozen=True, slots=True)
class _Judged:
    """One chunk after the per-row checks: data rows seen, rows kept (compact), rows rejected."""

    rows: int
    kept: pa.Table
    rejects: list[Reject]


_KEPT_SCHEMA = pa.schema([("row", pa.int64()), ("to", pa.large_string()), ("country", pa.large_string()),
                          ("text", pa.large_string()), ("sender", pa.large_string()), ("parts", pa.int32()),
                          ("unicode", pa.bool_())])


def _judge_chunk(chunk: loader.Chunk, plan: _Plan, memo: dict[tuple[str, str | None], Phone]) -> _Judged:
    """Phone, text, sender and parts of every row of one chunk."""
    table = chunk.table
    raw = _large(table.column(plan.phone))
    regions, bad_country = _regions(table, plan)
    phones = normalise_many(raw, regions, memo)
    phone_bad = _np_bool(pc.not_equal(phones.reason, ""))
    if plan.template is not None:
        texts = plan.template.render(table, plan.mapping)
    else:
        texts = render.column_texts(table, plan.text_column or "")
    empty = _np_bool(pc.equal(pc.utf8_length(texts), 0))
    senders, bad_sender = render.senders(table, plan.sender_column, plan.default_sender)
    candidate = ~(phone_bad | empty | bad_sender)
    idx = np.flatnonzero(candidate)
    measured = _measure(texts, idx)
    needs_unicode = np.zeros(len(table), dtype=bool)
    needs_unicode[idx] = measured.unicode
    gsm_reject = needs_unicode & plan.gsm_only
    keep = candidate & ~gsm_reject
    kept_pos = np.flatnonzero(keep[idx])
    take = pa.array(idx[kept_pos])
    kept = pa.table([
        pa.array(chunk.rows[idx[kept_pos]], pa.int64()), phones.e164.take(take), phones.country.take(take),
        texts.take(take), _large(senders).take(take), pa.array(measured.parts[kept_pos], pa.int32()),
        pa.array(measured.unicode[kept_pos], pa.bool_()),
    ], schema=_KEPT_SCHEMA)
    rejects = list(chunk.problems)
    country_cells = table.column(plan.country_column) if bad_country is not None and plan.country_column else None
    rejects += _chunk_rejects(chunk.rows, raw, phones.reason, (bad_country, country_cells), phone_bad, empty,
                              bad_sender, gsm_reject)
    return _Judged(rows=len(table) + len(chunk.problems), kept=kept, rejects=rejects)


def _measure(texts: pa.Array, idx: np.ndarray) -> render.Measured:
    """Parts and encoding of the rows ``idx`` (measured on every text when most rows count)."""
    if len(idx) < len(texts) // 2:
        return render.measure(texts.take(pa.array(idx)))
    measured = render.measure(texts)
    return render.Measured(parts=measured.parts[idx], unicode=measured.unicode[idx])


def _regions(table: pa.Table, plan: _Plan) -> tuple[pa.Array | str | None, np.ndarray | None]:
    """The default region per row (the country column when it holds a known code, else
    ``--country``) and, when there is a country column, a mask of cells that are not ISO codes."""
    if plan.country_column is None:
        return plan.default_region, None
    cells = pc.utf8_upper(pc.utf8_trim_whitespace(_large(table.column(plan.country_column))))
    distinct = pc.unique(cells).to_pylist()
    known = pa.array([c for c in distinct if c and is_region(c)], pa.large_string())
    valid = _np_bool(pc.is_in(cells, value_set=known))
    blank = _np_bool(pc.equal(cells, ""))
    fallback = pa.scalar(plan.default_region or "", pa.large_string())
    regions = pc.if_else(pa.array(valid), cells, fallback)
    return regions, ~valid & ~blank


def _chunk_rejects(rows: np.ndarray, raw: pa.Array, phone_reasons: pa.Array,
                   countries: tuple[np.ndarray | None, pa.ChunkedArray | None], phone_bad: np.ndarray,
                   empty: np.ndarray, bad_sender: np.ndarray, gsm_reject: np.ndarray) -> list[Reject]:
    """Rejects of one chunk; the first failing check gives the reason.

    A rejected number whose row names an unknown country is blamed on that country cell.
    """
    rejected = np.flatnonzero(phone_bad | empty | bad_sender | gsm_reject)
    if len(rejected) == 0:
        return []
    take = pa.array(rejected)
    reasons = np.full(len(rejected), render.REASON_NEEDS_UNICODE, dtype=object)
    reasons[bad_sender[rejected]] = render.REASON_BAD_SENDER
    reasons[empty[rejected]] = render.REASON_EMPTY_TEXT
    phone = phone_bad[rejected]
    reasons[phone] = np.asarray(phone_reasons.take(take).filter(pa.array(phone)).to_pylist(), dtype=object)
    bad_country, cells = countries
    if bad_country is not None and cells is not None:
        blamed = np.flatnonzero(phone & bad_country[rejected])
        for i, cell in zip(blamed, cells.take(pa.array(rejected[blamed])).to_pylist(), strict=True):
            reasons[i] = reason_unknown_country(cell.strip())
    values = raw.take(take).to_pylist()
    return [Reject(row, value, reason)
            for row, value, reason in zip(rows[rejected].tolist(), values, reasons.tolist(), strict=True)]


class _Numbers:
    """The kept rows' numbers, countries and row numbers, and which rows are still ``alive``.

    The later steps (duplicates, suppression, prices, HLR) only narrow ``alive``; the wide table
    (texts, senders) is filtered once at the end.
    """

    def __init__(self, row: np.ndarray, to: pa.Array, country: pa.Array) -> None:
        self.row = row
        self.to = to
        self.country_array = country
        self.alive = np.ones(len(row), dtype=bool)
        self._country: list[str] | None = None

    @classmethod
    def of(cls, tables: list[pa.Table]) -> _Numbers:
        """The narrow columns of the kept tables, concatenated (the texts are not copied)."""

        def column(name: str) -> pa.Array:
            return pa.concat_arrays([c for t in tables for c in t.column(name).chunks]) if tables else \
                pa.array([], _KEPT_SCHEMA.field(name).type)

        return cls(column("row").to_numpy(zero_copy_only=False), column("to"), column("country"))

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
    return pa.concat_tables(out) if out else _KEPT_SCHEMA.empty_table()


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


@dataclass(frozen=True, slots=True)
class _Lookups:
    """Lookups paid for in this run, per country, and their cost."""

    by_country: dict[str, int] = field(default_factory=dict)
    cost_by_country: dict[str, float] = field(default_factory=dict)
    cached: int = 0

    @property
    def count(self) -> int:
        """Lookups paid for."""
        return sum(self.by_country.values())

    @property
    def cost(self) -> float:
        """Their cost in the account currency."""
        return sum(self.cost_by_country.values())


def _hlr(numbers: _Numbers, rejects: list[Reject], pricing: _Pricing, options: PreflightOptions,
         settings: Settings, redis_client: redis.Redis, client: PreflightClient,
         progress: Progress | None) -> _Lookups:
    """Look the alive numbers up (cache first); ``invalid``/``unreachable`` ones become rejects."""
    prices = pricing.lookup or PriceList({}, pricing.currency)
    idx = np.flatnonzero(numbers.alive)
    alive = numbers.to.take(pa.array(idx)).to_pylist()
    countries = dict(zip(alive, numbers.country_array.take(pa.array(idx)).to_pylist(), strict=True))
    cache = HlrCache(redis_client, Keys(settings.key_prefix), settings.hlr_cache_ttl_s)
    outcome = check_numbers(alive, client=client, cache=cache, concurrency=settings.hlr_concurrency,
                            progress=progress,
                            before_lookups=_lookup_guard(countries, prices, pricing.account, options.max_cost))
    by_country: dict[str, int] = {}
    for number in outcome.looked_up:
        by_country[countries[number]] = by_country.get(countries[number], 0) + 1
    costs = {country: count * (prices.get(country) or 0.0) for country, count in by_country.items()}
    bad = np.zeros(len(numbers.alive), dtype=bool)
    bad[idx] = [not outcome.answers[n].usable for n in alive]
    position = dict(zip(idx.tolist(), alive, strict=True))
    rejects += numbers.reject(bad, lambda i: outcome.answers[position[i]].reason)
    return _Lookups(by_country=by_country, cost_by_country=costs, cached=outcome.cached)


def _lookup_guard(countries: dict[str, str], prices: PriceList, account: Account,
                  max_cost: float | None) -> Callable[[list[str]], None]:
    """Refuse to pay for lookups that alone would exceed the balance or ``max_cost`` (a country
    without a lookup price counts as free)."""
    limits = [(account.available, "the balance")]
    if max_cost is not None:
        limits.append((max_cost, "--max-cost"))

    def guard(missing: list[str]) -> None:
        cost = sum(prices.get(countries[n]) or 0.0 for n in missing)
        currency = account.currency or prices.currency
        for limit, what in limits:
            if cost > limit + 1e-9:
                raise BudgetExceeded(f"the {len(missing)} HLR lookups alone would cost {money(cost, currency)}, "
                                     f"more than {what} ({money(limit, currency)}); run with --no-hlr or raise it.")

    return guard


def _result(fmt: loader.FileFormat, plan: _Plan, rows: int, rejects: list[Reject], duplicates: int,
            suppressed: int, kept: pa.Table, lookups: _Lookups, pricing: _Pricing) -> PreflightResult:
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
    )


def _messages_frame(kept: pa.Table) -> pd.DataFrame:
    frame = kept.select(list(MESSAGE_COLUMNS)).to_pandas()
    return frame.astype({"row": "int64", "parts": "int64", "unicode": "bool", "price": "float64"})


def _by_country(kept: pa.Table, lookups: _Lookups) -> dict[str, CountrySummary]:
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


def _large(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    values = _combined(values)
    return values.cast(pa.large_string()) if values.type != pa.large_string() else values


def _combined(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    return values


def _np_bool(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    values = _combined(values)
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def check_file(path: str | Path, options: PreflightOptions) -> None:
    """Check, without reading the rows, paying or asking Instasent, that ``path`` is a recipient file
    that ``options`` fit: it can be read, has a phone column, every column the text names, a sender.

    Raises:
        InputError: naming what is wrong (a missing file included).
    """
    try:
        fmt = loader.sniff(path)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}.") from None
    _plan(fmt, options.validated())
