"""An upper bound of what a recipient file's messages can cost, read fast and keeping no rows.

``submit`` uses it to judge the budget before the exact preflight has run (see
:mod:`dispatcher.sending.loading`): when even the bound fits the balance and ``--max-cost``, the
file can be checked and stored in one pass. The bound is ``sum over rows of parts bound x price
bound`` and never less than the exact message cost (``tests/preflight/test_bound.py`` checks it
against the preflight over varied files):

* **parts**: each row's text is at most the template's literal pieces plus its trimmed cells (or
  its ``--text-column`` cell), so its length, encoding and "double" characters (GSM extension
  characters, astral characters in UCS-2) are bounded per distinct cell value, vectorised; a text
  with double characters counts as if every part lost one unit. Rows with an empty text, or a
  blank cell for a placeholder without a default, cost nothing (they are rejects).
* **price**: the price per part of every country the number could resolve to. Only the first
  :data:`PREFIX_CHARS` characters of a number decide its calling code (after ``+``, after the
  default region's international prefix, else the region's own code), so each distinct prefix is
  judged once in Python: the bound is the highest price among the countries of that calling code.
  Anything less clear (letters or other characters early, a non-literal international prefix,
  too few digits) takes the highest price of the whole profile. A row with no digit and no ``+``
  (``n/a``), or no country code and no default region, cannot be a message and costs nothing.

Duplicates, suppression and lookups are not taken off (they only lower the exact cost).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers import PhoneMetadata

from dispatcher.instasent.segments import GSM_BASIC, GSM_EXTENSION, GSM_LIMITS, UTF16_LIMITS
from dispatcher.preflight import arrow, fileformat, loader, render
from dispatcher.preflight.pricing import PriceList
from dispatcher.preflight.rows import NumberColumns, Plan, row_regions

#: Leading characters of a (trimmed) number that decide its price bound.
PREFIX_CHARS = 6
#: Rows read at once by the bound pass (it keeps only a few numbers per chunk).
BOUND_CHUNK_ROWS = 200_000

_CLEAR = re.compile(r"[ .\-()/]*\+?[0-9][0-9 .\-()/]*")
_NOT_GSM = "[^" + "".join(f"\\x{{{ord(c):04x}}}" for c in GSM_BASIC + GSM_EXTENSION) + "]"
_GSM_EXT = "[" + "".join(f"\\x{{{ord(c):04x}}}" for c in GSM_EXTENSION) + "]"
_ASTRAL = "[\\x{10000}-\\x{10ffff}]"


@dataclass(frozen=True, slots=True)
class CostBound:
    """What the bound pass found: ``rows`` read (blank rows included), at most ``messages``
    messages of at most ``parts`` parts costing at most ``cost`` (the price profile's currency)."""

    rows: int
    messages: int
    parts: int
    cost: float


def cost_bound(fmt: fileformat.FileFormat, plan: Plan, prices: PriceList,
               chunk_rows: int = BOUND_CHUNK_ROWS) -> CostBound:
    """Read the file at ``fmt`` once and bound its message cost (see the module docstring); a
    file with a ragged row is read again with Python's tolerant reader.

    Raises:
        InputError: when the file cannot be read as its format says.
    """
    tolerant = False
    while True:
        total = CostBound(rows=0, messages=0, parts=0, cost=0.0)
        judge = functools.partial(_chunk_bound, plan=plan, pricer=_Pricer(prices))
        try:
            # Two chunks at once: the work is in pyarrow kernels, which release the GIL.
            for one in loader.stream(fmt, judge, chunk_rows=chunk_rows, workers=2, tolerant=tolerant):
                total = CostBound(rows=total.rows + one.rows, messages=total.messages + one.messages,
                                  parts=total.parts + one.parts, cost=total.cost + one.cost)
            return total
        except loader.RaggedRows:
            tolerant = True


def _chunk_bound(chunk: loader.Chunk, plan: Plan, pricer: _Pricer) -> CostBound:
    """The bound of one chunk."""
    row_parts, row_price = parts_bound(chunk.table, plan), pricer.bound(chunk.table, plan)
    live = (row_parts > 0) & (row_price > 0)
    return CostBound(rows=chunk.table.num_rows + len(chunk.problems), messages=int(live.sum()),
                     parts=int(row_parts[live].sum()),
                     cost=float(np.dot(row_parts[live].astype(np.float64), row_price[live])))


# -- parts ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Units:
    """Per row: characters, GSM extension characters, astral characters, a non-GSM character."""

    chars: np.ndarray
    ext: np.ndarray
    astral: np.ndarray
    unicode: np.ndarray

    def add(self, other: _Units) -> None:
        self.chars += other.chars
        self.ext += other.ext
        self.astral += other.astral
        self.unicode |= other.unicode


def parts_bound(table: pa.Table, plan: Plan) -> np.ndarray:
    """Per row, at least the parts its message would be billed (0 for a row whose text is empty or
    misses a required placeholder value, which the preflight rejects)."""
    n = table.num_rows
    units = _Units(np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, bool))
    dead = np.zeros(n, dtype=bool)
    if plan.template is None:
        units.add(_cell_units(table.column(plan.text_column or ""), n))
    else:
        literal = "".join(p for p in plan.template.pieces if isinstance(p, str))
        units.add(_cell_units(pa.array([literal], pa.large_string()), 1, trim=False))
        for piece in plan.template.pieces:
            if isinstance(piece, render.Placeholder):
                cell = _cell_units(table.column(plan.mapping[piece.name]), n, default=piece.default)
                if piece.default is None:
                    dead |= cell.chars == 0
                units.add(cell)
    dead |= units.chars == 0
    if plan.gsm_only:
        dead |= units.unicode
    parts = _parts(units)
    parts[dead] = 0
    return parts


def _cell_units(cells: pa.Array | pa.ChunkedArray, n: int, *, trim: bool = True,
                default: str | None = None) -> _Units:
    """The units of each of ``n`` rows' (trimmed) cell, measured once per distinct value (a
    one-value array stands for every row); a blank cell counts as ``default`` when given."""
    values = arrow.texts(cells)
    if trim:
        values = pc.utf8_trim_whitespace(values)
    encoded = pc.dictionary_encode(values)
    words = encoded.dictionary
    if default is not None:
        words = pc.if_else(pc.equal(pc.utf8_length(words), 0), pa.scalar(default.strip(), pa.large_string()), words)
    chars = arrow.as_numpy(pc.utf8_length(words)).astype(np.int64)
    unicode = arrow.as_numpy(pc.match_substring_regex(words, _NOT_GSM))
    ext = arrow.as_numpy(pc.count_substring_regex(words, _GSM_EXT)).astype(np.int64)
    astral = arrow.as_numpy(pc.count_substring_regex(words, _ASTRAL)).astype(np.int64)
    if len(values) != n:  # one value for every row: numpy broadcasts it
        return _Units(chars[:1], ext[:1], astral[:1], unicode[:1])
    index = arrow.as_numpy(encoded.indices)
    return _Units(chars[index], ext[index], astral[index], unicode[index])


def _parts(units: _Units) -> np.ndarray:
    """Parts from a length and an encoding; with double characters each part may hold one unit
    less (a double never straddles two parts), so the split is bounded by ``multi - 1`` a part."""
    length = np.where(units.unicode, units.chars + units.astral, units.chars + units.ext)
    doubles = np.where(units.unicode, units.astral, units.ext) > 0
    single = np.where(units.unicode, UTF16_LIMITS[0], GSM_LIMITS[0])
    multi = np.where(units.unicode, UTF16_LIMITS[1], GSM_LIMITS[1]) - doubles.astype(np.int64)
    return np.where(length <= single, 1, (length - 1) // multi + 1).astype(np.int64)


# -- prices --------------------------------------------------------------------------------------


class _Pricer:
    """Price bounds per distinct ``(number prefix, whole, region)``, remembered across chunks."""

    def __init__(self, prices: PriceList) -> None:
        self.prices = prices
        self.top = max(prices.prices.values(), default=0.0)
        self.memo: dict[tuple[str, bool, str | None], float] = {}

    def bound(self, table: pa.Table, plan: Plan) -> np.ndarray:
        """Per row, at least the price per part of the country its number resolves to (0 when it
        cannot be a message)."""
        n = table.num_rows
        trimmed = pc.utf8_trim_whitespace(arrow.texts(table.column(plan.phone)))
        prefix = pc.utf8_slice_codeunits(trimmed, 0, PREFIX_CHARS)
        whole = arrow.as_numpy(pc.less_equal(pc.utf8_length(trimmed), PREFIX_CHARS))
        regions, _ = row_regions(table, NumberColumns(plan.phone, plan.country_column, plan.default_region))
        if regions is None or isinstance(regions, str):
            region_index, region_names = np.zeros(n, dtype=np.int64), [regions or None]
        else:
            encoded_regions = pc.dictionary_encode(arrow.texts(regions))
            region_index = arrow.as_numpy(encoded_regions.indices).astype(np.int64)
            region_names = [r or None for r in encoded_regions.dictionary.to_pylist()]
        encoded = pc.dictionary_encode(prefix)
        words = encoded.dictionary.to_pylist()
        word_index = arrow.as_numpy(encoded.indices).astype(np.int64)
        # One key per distinct (prefix, whole, region): few, whatever the length of the file.
        keys = (word_index * 2 + whole) * len(region_names) + region_index
        distinct, inverse = np.unique(keys, return_inverse=True)
        out = np.empty(len(distinct), dtype=np.float64)
        for i, key in enumerate(distinct.tolist()):
            word_whole, region = divmod(key, len(region_names))
            word, is_whole = divmod(word_whole, 2)
            out[i] = self._price(words[word], bool(is_whole), region_names[region])
        price = out[inverse.reshape(-1)]
        unclear = np.flatnonzero(np.isnan(price))
        if len(unclear):
            # Nothing phonenumbers could read as a number: ASCII without a digit or a plus sign.
            cells = trimmed.take(pa.array(unclear))
            digits = arrow.as_numpy(pc.match_substring_regex(cells, "[0-9+]"))
            junk = arrow.as_numpy(pc.string_is_ascii(cells)) & ~digits
            price[unclear] = np.where(junk, 0.0, self.top)
        return price

    def _price(self, prefix: str, whole: bool, region: str | None) -> float:
        key = (prefix, whole, region)
        price = self.memo.get(key)
        if price is None:
            price = self.memo[key] = self._judge(prefix, whole, region)
        return price

    def _judge(self, prefix: str, whole: bool, region: str | None) -> float:
        """The bound for a number starting with ``prefix`` (all of it when ``whole``)."""
        if not _CLEAR.fullmatch(prefix):
            return np.nan  # unclear: judged on the whole cell by the caller
        digits = re.sub(r"[^0-9]", "", prefix)
        if "+" in prefix:
            return self._after_prefix(digits)
        if region is None:
            return 0.0  # no "+" and no default region: "missing country code"
        metadata = PhoneMetadata.metadata_for_region(region)
        if metadata is None or metadata.country_code is None:
            return self.top
        base = self._code_price(int(metadata.country_code))
        idd = metadata.international_prefix or ""
        if not idd.isdigit():
            # A pattern (several prefixes): any number that may start with one of them is unclear.
            return self.top if not digits or digits[0] in _first_digits(idd) else base
        if digits.startswith(idd):
            rest = digits[len(idd):]
            if rest[:1] == "0":
                return base  # phonenumbers reads a 0 after the prefix as a national number
            return max(base, self._after_prefix(rest))
        if not whole and idd.startswith(digits):
            return self.top  # too few digits to tell
        return base

    def _after_prefix(self, digits: str) -> float:
        """The bound for digits that start with a calling code (phonenumbers takes the shortest known)."""
        if not digits or digits[0] == "0":
            return self.top
        for size in (1, 2, 3):
            if len(digits) < size:
                return self.top
            code = int(digits[:size])
            if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                return self._code_price(code)
        return self.top

    def _code_price(self, code: int) -> float:
        """The highest price among the countries of calling code ``code`` (0 when none has one)."""
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())
        return max((self.prices.get(r) or 0.0 for r in regions), default=0.0)


def _first_digits(pattern: str) -> str:
    """Digits an international prefix ``pattern`` may start with: the first character of each
    top-level alternative (every digit when one does not start with a plain digit)."""
    firsts, depth, at_start = set(), 0, True
    for char in pattern:
        if at_start:
            if not char.isdigit():
                return "0123456789"
            firsts.add(char)
            at_start = False
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            at_start = True
    return "".join(sorted(firsts)) if not at_start else "0123456789"
