"""Phone normalisation for whole columns: :func:`normalise_many`, the same answers as
:func:`dispatcher.preflight.phones.normalise`, fast.

The common shapes (E.164, ``+`` with separators, ``00`` and national forms of the default region)
are split here into calling code and national number and checked by
:mod:`dispatcher.preflight.phone_metadata`'s vectorised rules. That path only ever *accepts* a
number (or rejects an international one for a reason the reference path would give too); every
value it cannot settle goes through :func:`~dispatcher.preflight.phones.normalise`, once per
distinct ``(value, region)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers import PhoneMetadata

from dispatcher.preflight.arrow import as_numpy, repeat, subset, texts
from dispatcher.preflight.phone_metadata import (
    MIN_NSN,
    Settled,
    metadata_for,
    re2_prefix,
    validate,
)
from dispatcher.preflight.phones import Phone, normalise


@dataclass(frozen=True, slots=True)
class PhoneColumns:
    """:func:`normalise_many`'s answer, one entry per input row.

    ``e164`` and ``country`` are empty strings for rejected rows, ``reason`` is empty for kept
    rows; ``fast`` counts the rows settled by the vectorised path (for tests and benchmarks).
    """

    e164: pa.Array
    country: pa.Array
    reason: pa.Array
    fast: int


def normalise_many(
    raw: pa.Array,
    regions: pa.Array | str | None = None,
    memo: dict[tuple[str, str | None], Phone] | None = None,
) -> PhoneColumns:
    """Normalise a column of raw phone values.

    ``regions`` is the default region: one for all rows (ISO, upper case, or None), or one per row
    (a string array; empty entries mean "no region"). ``memo`` caches :func:`normalise` answers
    across calls (pass the same dict for every chunk of a file). The result equals
    ``[normalise(v, r) for v, r in zip(raw, regions)]``.
    """
    raw = texts(raw)
    n = len(raw)
    memo = {} if memo is None else memo
    settled = _fast_path(pc.utf8_trim_whitespace(raw), _region_groups(regions, n))
    decided = np.zeros(n, dtype=bool)
    for part in settled:
        decided[part.rows] = True
    slow_idx = np.flatnonzero(~decided)
    slow = _slow_path(raw.take(pa.array(slow_idx)), _regions_at(regions, slow_idx), memo)
    rows = [part.rows for part in settled] + [slow_idx]
    return PhoneColumns(
        e164=_scatter(n, rows, [p.e164 for p in settled] + [_strings(x.e164 for x in slow)]),
        country=_scatter(n, rows, [p.country for p in settled] + [_strings(x.country for x in slow)]),
        reason=_scatter(n, rows, [p.reason for p in settled] + [_strings(x.reason for x in slow)]),
        fast=int(n - len(slow_idx)),
    )


def _strings(values: Iterable[str]) -> pa.Array:
    return pa.array(list(values), pa.large_string())


def _region_groups(regions: pa.Array | str | None, n: int) -> list[tuple[str | None, np.ndarray | None]]:
    """``[(region, row indices or None for all rows)]`` for the region-dependent parsing steps."""
    if regions is None or isinstance(regions, str):
        return [(regions or None, None)]
    encoded = pc.dictionary_encode(texts(regions))
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    return [(code or None, np.flatnonzero(indices == i)) for i, code in enumerate(encoded.dictionary.to_pylist())]


def _regions_at(regions: pa.Array | str | None, idx: np.ndarray) -> list[str | None]:
    if regions is None or isinstance(regions, str):
        return [regions or None] * len(idx)
    return [code or None for code in texts(regions).take(pa.array(idx)).to_pylist()]


def _slow_path(raw: pa.Array, regions: list[str | None], memo: dict[tuple[str, str | None], Phone]) -> list[Phone]:
    """:func:`normalise` for each value, once per distinct ``(value, region)``."""
    out = []
    for value, region in zip(raw.to_pylist(), regions, strict=True):
        key = (value, region)
        phone = memo.get(key)
        if phone is None:
            phone = normalise(value, region)
            if len(memo) >= _MEMO_LIMIT:
                memo.clear()
            memo[key] = phone
        out.append(phone)
    return out


_MEMO_LIMIT = 500_000


def _scatter(n: int, rows: list[np.ndarray], values: list[pa.Array]) -> pa.Array:
    """One string array of length ``n`` from values known at disjoint row sets (empty elsewhere)."""
    idx = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, dtype=np.int64)
    if len(idx) == 0:
        return repeat("", n)
    ordered = pa.concat_arrays([v.cast(pa.large_string()) for v in values]).take(
        pa.array(np.argsort(idx, kind="stable")))
    if len(idx) == n:
        return ordered
    mask = np.zeros(n, dtype=bool)
    mask[idx] = True
    return pc.replace_with_mask(repeat("", n), pa.array(mask), ordered)


# Shapes the fast path handles: ASCII digits with spaces, dots, dashes, slashes and parentheses,
# optionally after one leading "+". phonenumbers reads exactly the digits of such a value.
_SHAPE = r"^\+?[0-9 .\-()/]+$"
_STRIP = r"[ .\-()/]"
_DECIMAL_RE2 = r"^\+?[0-9]{5,}[.,]0{1,2}$"


def _fast_path(trimmed: pa.Array, region_rows: list[tuple[str | None, np.ndarray | None]]) -> list[Settled]:
    """Answer the rows whose shape the vectorised path understands.

    International forms (``+``, or ``00`` where that is the region's international prefix) are
    settled either way; national forms are only ever accepted, because a rejected national number
    may deserve the "lost its leading 0 or +" reason, which :func:`normalise` works out.
    """
    n = len(trimmed)
    shape = as_numpy(pc.match_substring_regex(trimmed, _SHAPE))
    shape &= ~as_numpy(pc.match_substring_regex(trimmed, _DECIMAL_RE2))
    rows = np.flatnonzero(shape)
    if len(rows) == 0:
        return []
    values = trimmed.take(pa.array(rows)) if len(rows) < n else trimmed
    plus = as_numpy(pc.starts_with(values, "+"))
    digits = pc.utf8_ltrim(_strip_separators(values), characters="+")
    out = _international(rows[plus], digits.filter(pa.array(plus)))
    position = np.full(n, -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    for region, members in region_rows:
        metadata = metadata_for(region)
        if metadata is None:
            continue
        mine = ~plus if members is None else ~plus & _member_mask(position, members, len(rows))
        if mine.any():
            out += _local(rows[mine], digits.filter(pa.array(mine)), metadata)
    return out


def _local(rows: np.ndarray, digits: pa.Array, metadata: PhoneMetadata) -> list[Settled]:
    """Values without ``+`` read with a default region: ``00`` international or national forms."""
    out: list[Settled] = []
    idd = as_numpy(pc.starts_with(digits, "00")) & ~as_numpy(pc.starts_with(digits, "000"))
    if metadata.international_prefix == "00":
        out += _international(rows[idd], pc.utf8_slice_codeunits(digits.filter(pa.array(idd)), 2))
    national = ~as_numpy(pc.starts_with(digits, "00"))
    if metadata.international_prefix not in (None, "00"):
        prefix_re = re2_prefix(metadata.international_prefix)
        if prefix_re is None:
            return out
        national &= ~as_numpy(pc.match_substring_regex(digits, prefix_re))
    # Digits that start with the region's own calling code go through phonenumbers' heuristic.
    national &= ~as_numpy(pc.starts_with(digits, str(metadata.country_code)))
    if national.any():
        out += validate(rows[national], digits.filter(pa.array(national)), int(metadata.country_code or 0),
                        metadata, settle_rejects=False)
    return out


def _member_mask(position: np.ndarray, members: np.ndarray, size: int) -> np.ndarray:
    """Mask over the shape-ok rows (``size``) of the original rows listed in ``members``."""
    mask = np.zeros(size, dtype=bool)
    pos = position[members]
    mask[pos[pos >= 0]] = True
    return mask


def _strip_separators(values: pa.Array) -> pa.Array:
    """``values`` without separators; only the rows that have some are rewritten."""
    dirty = as_numpy(pc.match_substring_regex(values, _STRIP))
    if not dirty.any():
        return values
    stripped = pc.replace_substring_regex(values.filter(pa.array(dirty)), _STRIP, "")
    return pc.replace_with_mask(values, pa.array(dirty), stripped)


def _international(rows: np.ndarray, digits: pa.Array) -> list[Settled]:
    """Values written after an international prefix: ``digits`` starts with the calling code."""
    if len(rows) == 0:
        return []
    lengths = as_numpy(pc.utf8_length(digits))
    # phonenumbers: more than two digits after the prefix, no leading 0, the shortest known code.
    usable = (lengths > MIN_NSN) & ~as_numpy(pc.starts_with(digits, "0"))
    code = np.zeros(len(rows), dtype=np.int64)
    for size in (3, 2, 1):
        head = pc.utf8_slice_codeunits(digits, 0, size)
        known = as_numpy(pc.is_in(head, value_set=_CALLING_CODES)) & (lengths >= size)
        code = np.where(known, _to_int(head, known), code)
    # Sort the usable rows by calling code once; each code's rows are then a zero-copy slice.
    chosen = np.flatnonzero(usable & (code > 0))
    if len(chosen) == 0:
        return []
    chosen = chosen[np.argsort(code[chosen], kind="stable")]
    ordered = subset(digits, chosen)
    codes, starts = np.unique(code[chosen], return_index=True)
    ends = np.append(starts[1:], len(chosen))
    out = []
    for cc, start, end in zip(codes.tolist(), starts.tolist(), ends.tolist(), strict=True):
        metadata = metadata_for(phonenumbers.region_code_for_country_code(cc))
        if metadata is not None:
            nsn = pc.utf8_slice_codeunits(ordered.slice(start, end - start), len(str(cc)))
            out += validate(rows[chosen[start:end]], nsn, cc, metadata, settle_rejects=True)
    return out


def _to_int(head: pa.Array, known: np.ndarray) -> np.ndarray:
    """Integer value of the ``known`` entries of a digit-string array (0 elsewhere)."""
    return as_numpy(pc.cast(pc.if_else(pa.array(known), head, "0"), pa.int64()))


_CALLING_CODES = pa.array([str(cc) for cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE], pa.large_string())
