"""Step 2 of the preflight, one chunk of the file at a time: each row's phone number, text, sender
and parts, and the reject reason of every row that fails one of them.

:func:`plan_columns` settles once, from the header and the options, which column plays which part;
:func:`judge_chunk` then keeps the good rows in a compact table (:data:`KEPT_SCHEMA`) and lists the
others with the reason of the first check they fail.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dispatcher.errors import InputError
from dispatcher.preflight import arrow, fileformat, loader, render
from dispatcher.preflight.phone_columns import PhoneColumns, normalise_many
from dispatcher.preflight.phones import Phone, is_region, reason_unknown_country
from dispatcher.preflight.rejects import Reject
from dispatcher.preflight.result import PreflightOptions


@dataclass(frozen=True, slots=True)
class Plan:
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


@dataclass(frozen=True, slots=True)
class NumberColumns:
    """Where a file's phone numbers and their countries are: what the preflight and
    ``suppress import`` share, so that an opt-out list imports every number a preflight accepts."""

    phone: str
    country_column: str | None
    default_region: str | None

    @classmethod
    def of(cls, fmt: fileformat.FileFormat, phone_column: str | None, default_region: str | None) -> NumberColumns:
        """The phone column (``phone_column`` or found by name) and the per-row country column, if any.

        Raises:
            InputError: when there is no phone column.
        """
        phone = fileformat.require_column(fmt, phone_column, fileformat.PHONE_NAMES, "phone", "--phone-column")
        others = [c for c in fmt.columns if c != phone]
        return cls(phone, fileformat.find_column(others, None, fileformat.COUNTRY_NAMES), default_region)


@dataclass(frozen=True, slots=True)
class Numbers:
    """One chunk's numbers after :func:`judge_numbers`: the raw cells, the normalised numbers
    (reason empty when good) and, with a country column, which cells name no known country."""

    raw: pa.Array
    phones: PhoneColumns
    bad_country: np.ndarray | None
    country_cells: pa.ChunkedArray | None

    @property
    def bad(self) -> np.ndarray:
        """Mask of the rows whose number is rejected."""
        return arrow.as_numpy(pc.not_equal(self.phones.reason, ""))

    def reasons(self, idx: np.ndarray) -> list[str]:
        """Reject reasons of the rows ``idx`` (all bad numbers); a number whose row names an unknown
        country is blamed on that country cell."""
        reasons = self.phones.reason.take(pa.array(idx)).to_pylist() if len(idx) else []
        if self.bad_country is not None and self.country_cells is not None:
            blamed = np.flatnonzero(self.bad_country[idx])
            for i, cell in zip(blamed, self.country_cells.take(pa.array(idx[blamed])).to_pylist(), strict=True):
                reasons[i] = reason_unknown_country(cell.strip())
        return reasons


def judge_numbers(table: pa.Table, columns: NumberColumns,
                  memo: dict[tuple[str, str | None], Phone] | None = None) -> Numbers:
    """Normalise one chunk's numbers, each with its row's country (else the default region)."""
    raw = arrow.large_strings(table.column(columns.phone))
    regions, bad_country = row_regions(table, columns)
    cells = table.column(columns.country_column) if bad_country is not None and columns.country_column else None
    return Numbers(raw, normalise_many(raw, regions, memo), bad_country, cells)


def plan_columns(fmt: fileformat.FileFormat, options: PreflightOptions) -> Plan:
    numbers = NumberColumns.of(fmt, options.phone_column, options.country)
    phone, country = numbers.phone, numbers.country_column
    others = [c for c in fmt.columns if c != phone]
    sender = fileformat.find_column(others, None, fileformat.SENDER_NAMES)
    if sender is None and options.sender is None:
        raise InputError("no sender: give --from NAME (1..11 characters) or add a 'from' column.")
    template = render.Template.parse(options.text) if options.text is not None else None
    mapping = template.bind(fmt.columns) if template is not None else {}
    text_column = None
    if options.text_column is not None:
        text_column = fileformat.require_column(fmt, options.text_column, (), "text", "--text-column")
    return Plan(phone=phone, country_column=country, default_region=options.country, sender_column=sender,
                 default_sender=options.sender, template=template, mapping=mapping, text_column=text_column,
                 gsm_only=options.gsm_only)


@dataclass(frozen=True, slots=True)
class Judged:
    """One chunk after the per-row checks: data rows seen, rows kept (compact), rows rejected."""

    rows: int
    kept: pa.Table
    rejects: list[Reject]


KEPT_SCHEMA = pa.schema([("row", pa.int64()), ("to", pa.large_string()), ("country", pa.large_string()),
                          ("text", pa.large_string()), ("sender", pa.large_string()), ("parts", pa.int32()),
                          ("unicode", pa.bool_())])


def judge_chunk(chunk: loader.Chunk, plan: Plan, memo: dict[tuple[str, str | None], Phone]) -> Judged:
    """Phone, text, sender and parts of every row of one chunk."""
    table = chunk.table
    numbers = judge_numbers(table, NumberColumns(plan.phone, plan.country_column, plan.default_region), memo)
    phones = numbers.phones
    phone_bad = numbers.bad
    if plan.template is not None:
        texts = plan.template.render(table, plan.mapping)
        no_value = plan.template.missing_values(table, plan.mapping)
    else:
        texts = render.column_texts(table, plan.text_column or "")
        no_value = np.full(len(table), "", dtype=object)
    empty = arrow.as_numpy(pc.equal(pc.utf8_length(texts), 0))
    senders, bad_sender = render.senders(table, plan.sender_column, plan.default_sender)
    candidate = ~(phone_bad | (no_value != "") | empty | bad_sender)
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
        texts.take(take), arrow.large_strings(senders).take(take), pa.array(measured.parts[kept_pos], pa.int32()),
        pa.array(measured.unicode[kept_pos], pa.bool_()),
    ], schema=KEPT_SCHEMA)
    rejects = list(chunk.problems)
    rejects += _chunk_rejects(chunk.rows, numbers, phone_bad, no_value, empty, bad_sender, gsm_reject)
    return Judged(rows=len(table) + len(chunk.problems), kept=kept, rejects=rejects)


def _measure(texts: pa.Array, idx: np.ndarray) -> render.Measured:
    """Parts and encoding of the rows ``idx`` (measured on every text when most rows count)."""
    if len(idx) < len(texts) // 2:
        return render.measure(texts.take(pa.array(idx)))
    measured = render.measure(texts)
    return render.Measured(parts=measured.parts[idx], unicode=measured.unicode[idx])


def row_regions(table: pa.Table, plan: NumberColumns) -> tuple[pa.Array | str | None, np.ndarray | None]:
    """The default region per row (the country column when it holds a known code, else
    ``--country``) and, when there is a country column, a mask of cells that are not ISO codes."""
    if plan.country_column is None:
        return plan.default_region, None
    cells = pc.utf8_upper(pc.utf8_trim_whitespace(arrow.large_strings(table.column(plan.country_column))))
    distinct = pc.unique(cells).to_pylist()
    known = pa.array([c for c in distinct if c and is_region(c)], pa.large_string())
    valid = arrow.as_numpy(pc.is_in(cells, value_set=known))
    blank = arrow.as_numpy(pc.equal(cells, ""))
    fallback = pa.scalar(plan.default_region or "", pa.large_string())
    regions = pc.if_else(pa.array(valid), cells, fallback)
    return regions, ~valid & ~blank


def _chunk_rejects(rows: np.ndarray, numbers: Numbers, phone_bad: np.ndarray, no_value: np.ndarray,
                   empty: np.ndarray, bad_sender: np.ndarray, gsm_reject: np.ndarray) -> list[Reject]:
    """Rejects of one chunk; the first failing check gives the reason (phone, placeholder values,
    text, sender, encoding). ``no_value`` holds each row's empty-placeholder reason or ``""``."""
    missing = no_value != ""
    rejected = np.flatnonzero(phone_bad | missing | empty | bad_sender | gsm_reject)
    if len(rejected) == 0:
        return []
    reasons = np.full(len(rejected), render.REASON_NEEDS_UNICODE, dtype=object)
    reasons[bad_sender[rejected]] = render.REASON_BAD_SENDER
    reasons[empty[rejected]] = render.REASON_EMPTY_TEXT
    reasons[missing[rejected]] = no_value[rejected][missing[rejected]]
    phone = phone_bad[rejected]
    reasons[phone] = np.asarray(numbers.reasons(rejected[phone]), dtype=object)
    values = numbers.raw.take(pa.array(rejected)).to_pylist()
    return [Reject(row, value, reason)
            for row, value, reason in zip(rows[rejected].tolist(), values, reasons.tolist(), strict=True)]
