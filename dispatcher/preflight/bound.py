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
BOUND_CHUNK_ROWS = 100_000

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
                # mimalloc keeps freed pages for reuse: give them back, the storing pass needs them.
                pa.default_memory_pool().release_unused()
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


# Per distinct text piece: its GSM units (septets) in the low 32 bits and its UCS-2 units above, so
# one addition sums both; and flags, or-ed across the pieces of a text.
_LOW = (1 << 32) - 1
_UNICODE, _HAS_EXT, _HAS_ASTRAL, _EMPTY = 1, 2, 4, 8


def parts_bound(table: pa.Table, plan: Plan) -> np.ndarray:
    """Per row, at least the parts its message would be billed (0 for a row whose text is empty or
    misses a required placeholder value, which the preflight rejects)."""
    n = table.num_rows
    units = np.zeros(n, dtype=np.int64)
    flags = np.zeros(n, dtype=np.uint8)
    dead = np.zeros(n, dtype=bool)
    if plan.template is None:
        cell_units, cell_flags = _cell_units(table.column(plan.text_column or ""))
        units += cell_units
        flags |= cell_flags
    else:
        literal = "".join(p for p in plan.template.pieces if isinstance(p, str))
        literal_units, literal_flags = _piece_units(pa.array([literal], pa.large_string()))
        units += literal_units[0]
        flags |= literal_flags[0] & ~np.uint8(_EMPTY)
        for piece in plan.template.pieces:
            if isinstance(piece, render.Placeholder):
                cell_units, cell_flags = _cell_units(table.column(plan.mapping[piece.name]), piece.default)
                units += cell_units
                flags |= cell_flags & ~np.uint8(_EMPTY)
                if piece.default is None:
                    dead |= (cell_flags & _EMPTY) != 0
    dead |= (units & _LOW) == 0
    unicode = (flags & _UNICODE) != 0
    if plan.gsm_only:
        dead |= unicode
    parts = _parts(units, flags)
    parts[dead] = 0
    return parts


def _cell_units(cells: pa.Array | pa.ChunkedArray, default: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Packed units and flags of every row's trimmed cell, measured once per distinct value; a
    blank cell counts as ``default`` when given."""
    encoded = pc.dictionary_encode(arrow.texts(cells))
    words = pc.utf8_trim_whitespace(encoded.dictionary)
    if default is not None:
        words = pc.if_else(pc.equal(pc.utf8_length(words), 0), pa.scalar(default.strip(), pa.large_string()), words)
    units, flags = _piece_units(words)
    index = arrow.as_numpy(encoded.indices)
    return units[index], flags[index]


def _piece_units(words: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Packed units and flags of each string of ``words``."""
    chars = arrow.as_numpy(pc.utf8_length(words)).astype(np.int64)
    unicode = arrow.as_numpy(pc.match_substring_regex(words, _NOT_GSM))
    ext = arrow.as_numpy(pc.count_substring_regex(words, _GSM_EXT)).astype(np.int64)
    astral = arrow.as_numpy(pc.count_substring_regex(words, _ASTRAL)).astype(np.int64)
    units = (chars + ext) | ((chars + astral) << 32)
    flags = (unicode * _UNICODE) | ((ext > 0) * _HAS_EXT) | ((astral > 0) * _HAS_ASTRAL) | ((chars == 0) * _EMPTY)
    return units, flags.astype(np.uint8)


def _parts(units: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Parts from a length and an encoding; with double characters each part may hold one unit
    less (a double never straddles two parts), so the split is bounded by ``multi - 1`` a part."""
    unicode = (flags & _UNICODE) != 0
    length = np.where(unicode, units >> 32, units & _LOW)
    doubles = np.where(unicode, flags & _HAS_ASTRAL, flags & _HAS_EXT) != 0
    single = np.where(unicode, UTF16_LIMITS[0], GSM_LIMITS[0])
    multi = np.where(unicode, UTF16_LIMITS[1], GSM_LIMITS[1]) - doubles.astype(np.int64)
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
        size = 2 * len(words) * len(region_names)
        if size <= 4 * n:  # a table of every possible key: no sort
            present, inverse = np.flatnonzero(np.bincount(keys, minlength=size)), None
        else:
            present, inverse = np.unique(keys, return_inverse=True)
        out = np.zeros(len(present), dtype=np.float64)
        for i, key in enumerate(present.tolist()):
            word_whole, region = divmod(key, len(region_names))
            word, is_whole = divmod(word_whole, 2)
            out[i] = self._price(words[word], bool(is_whole), region_names[region])
        if inverse is None:
            table_of_keys = np.zeros(size, dtype=np.float64)
            table_of_keys[present] = out
            price = table_of_keys[keys]
        else:
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
