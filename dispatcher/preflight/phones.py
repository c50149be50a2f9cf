"""Phone numbers to E.164, with a plain reason for every number that cannot receive an SMS.

The answer for one number is :func:`normalise`: ``phonenumbers.parse`` with the row's default
region, ``is_valid_number``, ``number_type`` and ``format_number(E164)``, plus a thin policy on top:

* a number is kept only when its type is ``MOBILE`` or ``FIXED_LINE_OR_MOBILE`` (the metadata
  cannot tell the two apart in some countries, such as the US);
* values a spreadsheet has damaged (``3.4612E+10``, ``34612345678.0``) are rejected as such, and a
  number that is invalid as written but valid with a leading ``+`` or ``0`` is rejected with a
  reason that says it probably lost that prefix. A number phonenumbers itself accepts without its
  ``+`` (``34612345678`` with the default region ES) is kept, as phonenumbers decides.

:func:`normalise_many` gives the same answers for a whole column, fast: the common shapes (E.164,
``+`` with separators, ``00`` and national forms of the default region) are split into calling code
and national number and checked against the phonenumbers metadata with vectorised RE2 full matches
(possible lengths, general description, the excluded number types, then mobile or fixed-line). It
only ever *accepts* a number that way; every value it cannot prove valid goes through
:func:`normalise`, once per distinct ``(value, region)``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberType

from dispatcher.errors import InputError

#: Number types that can receive an SMS.
ACCEPTED_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})

REASON_EMPTY = "empty phone"
REASON_SCIENTIFIC = "mangled by a spreadsheet (scientific notation)"
REASON_DECIMAL = "mangled by a spreadsheet (decimal number)"
REASON_LOST_PREFIX = "missing leading 0 or + (looks like a number a spreadsheet changed)"
REASON_NO_COUNTRY = "missing country code (use --country or a country column)"
REASON_NOT_A_NUMBER = "not a phone number"
REASON_TOO_SHORT = "invalid number (too short)"
REASON_TOO_LONG = "invalid number (too long)"
REASON_UNKNOWN_CODE = "unknown country calling code"

_TYPE_LABELS = {
    PhoneNumberType.FIXED_LINE: "fixed line",
    PhoneNumberType.TOLL_FREE: "toll free",
    PhoneNumberType.PREMIUM_RATE: "premium rate",
    PhoneNumberType.SHARED_COST: "shared cost",
    PhoneNumberType.VOIP: "VoIP",
    PhoneNumberType.PERSONAL_NUMBER: "personal number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "UAN",
    PhoneNumberType.VOICEMAIL: "voicemail",
}

# Spreadsheet damage: scientific notation, and a whole number written back with a decimal part.
_SCIENTIFIC = re.compile(r"[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+")
_DECIMAL = re.compile(r"\+?\d{5,}[.,]0{1,2}")
_SEPARATORS = re.compile(r"[\s.\-()/]")
_NO_COUNTRY = "ZZ"


def reason_invalid(region: str | None) -> str:
    """``invalid number for XX``, or ``invalid number`` when the region is unknown."""
    return f"invalid number for {region}" if region and region not in {_NO_COUNTRY, "001"} else "invalid number"


def reason_not_mobile(number_type: int) -> str:
    """``not a mobile number (fixed line)`` and the like."""
    return f"not a mobile number ({_TYPE_LABELS.get(number_type, 'unknown type')})"


def reason_unknown_country(value: str) -> str:
    """Reason for a row whose country column holds something that is not an ISO code."""
    return f"unknown country {value!r} in the country column"


@dataclass(frozen=True, slots=True)
class Phone:
    """The outcome for one raw value: ``e164`` and ``country`` (ISO) when kept, else ``reason``."""

    e164: str = ""
    country: str = ""
    reason: str = ""

    @property
    def ok(self) -> bool:
        """True when the number can receive an SMS."""
        return not self.reason


def is_region(code: str) -> bool:
    """True when ``code`` (any case) is an ISO 3166 region phonenumbers knows."""
    return code.upper() in phonenumbers.SUPPORTED_REGIONS


def parse_region(code: str | None) -> str | None:
    """Check a ``--country`` value and return it upper-cased (None stays None).

    Raises:
        InputError: when the code is not a region phonenumbers knows.
    """
    if code is None or not code.strip():
        return None
    region = code.strip().upper()
    if not is_region(region):
        raise InputError(f"--country must be an ISO country code such as ES or GB, got {code!r}.")
    return region


# -- the reference path: one number at a time ---------------------------------------------------


def normalise(raw: str, region: str | None = None) -> Phone:
    """Normalise one value with ``region`` (ISO, upper case, or None) as the default region.

    Returns a :class:`Phone`; never raises for bad input.
    """
    value = raw.strip()
    if not value:
        return Phone(reason=REASON_EMPTY)
    if region is not None and not is_region(region):
        region = None
    if _SCIENTIFIC.fullmatch(value):
        return Phone(reason=REASON_SCIENTIFIC)
    if _DECIMAL.fullmatch(value):
        return Phone(reason=REASON_DECIMAL)
    try:
        number = phonenumbers.parse(value, region)
    except NumberParseException as exc:
        return Phone(reason=_parse_error_reason(exc, value, region))
    if not phonenumbers.is_valid_number(number):
        if _lost_prefix(value, region):
            return Phone(reason=REASON_LOST_PREFIX)
        found = phonenumbers.region_code_for_number(number)
        main = phonenumbers.region_code_for_country_code(number.country_code or 0)
        return Phone(reason=reason_invalid(found or main))
    kind = phonenumbers.number_type(number)
    if kind not in ACCEPTED_TYPES:
        return Phone(reason=reason_not_mobile(kind))
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return Phone(e164=e164, country=phonenumbers.region_code_for_number(number) or "")


def _parse_error_reason(exc: NumberParseException, value: str, region: str | None) -> str:
    """Turn a parse failure into a reason, spotting numbers that lost their ``+`` or ``0``."""
    if _lost_prefix(value, region):
        return REASON_LOST_PREFIX
    kind = exc.error_type
    if kind == NumberParseException.INVALID_COUNTRY_CODE:
        if value.lstrip("(").startswith("+") or region is not None:
            return REASON_UNKNOWN_CODE
        return REASON_NO_COUNTRY
    if kind in (NumberParseException.TOO_SHORT_NSN, NumberParseException.TOO_SHORT_AFTER_IDD):
        return REASON_TOO_SHORT
    if kind == NumberParseException.TOO_LONG:
        return REASON_TOO_LONG
    return REASON_NOT_A_NUMBER


def _lost_prefix(value: str, region: str | None) -> bool:
    """True when bare digits are invalid as written but valid with a ``+`` (or a ``0`` for ``region``)."""
    digits = _SEPARATORS.sub("", value)
    if not digits.isascii() or not digits.isdigit() or digits.startswith("0"):
        return False
    candidates: list[tuple[str, str | None]] = [("+" + digits, None)]
    if region is not None:
        candidates.append(("0" + digits, region))
    for candidate, default in candidates:
        try:
            number = phonenumbers.parse(candidate, default)
        except NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return True
    return False


# -- the fast path: whole columns ----------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class _Settled:
    """Rows (original indices) the vectorised path has answered, with their answers."""

    rows: np.ndarray
    e164: pa.Array
    country: pa.Array
    reason: pa.Array


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
    raw = _as_large_string(raw)
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


def _repeat(value: str, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, pa.large_string()), n)


def _as_large_string(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if values.type != pa.large_string():
        values = values.cast(pa.large_string())
    return pc.fill_null(values, "")


def _region_groups(regions: pa.Array | str | None, n: int) -> list[tuple[str | None, np.ndarray | None]]:
    """``[(region, row indices or None for all rows)]`` for the region-dependent parsing steps."""
    if regions is None or isinstance(regions, str):
        return [(regions or None, None)]
    encoded = pc.dictionary_encode(_as_large_string(regions))
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    return [(code or None, np.flatnonzero(indices == i)) for i, code in enumerate(encoded.dictionary.to_pylist())]


def _regions_at(regions: pa.Array | str | None, idx: np.ndarray) -> list[str | None]:
    if regions is None or isinstance(regions, str):
        return [regions or None] * len(idx)
    return [code or None for code in _as_large_string(regions).take(pa.array(idx)).to_pylist()]


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
        return _repeat("", n)
    ordered = pa.concat_arrays([v.cast(pa.large_string()) for v in values]).take(
        pa.array(np.argsort(idx, kind="stable")))
    if len(idx) == n:
        return ordered
    mask = np.zeros(n, dtype=bool)
    mask[idx] = True
    return pc.replace_with_mask(_repeat("", n), pa.array(mask), ordered)


# Shapes the fast path handles: ASCII digits with spaces, dots, dashes, slashes and parentheses,
# optionally after one leading "+". phonenumbers reads exactly the digits of such a value.
_SHAPE = r"^\+?[0-9 .\-()/]+$"
_STRIP = r"[ .\-()/]"
_DECIMAL_RE2 = r"^\+?[0-9]{5,}[.,]0{1,2}$"
_MIN_NSN, _MAX_NSN = 2, 17


def _fast_path(trimmed: pa.Array, region_rows: list[tuple[str | None, np.ndarray | None]]) -> list[_Settled]:
    """Answer the rows whose shape the vectorised path understands.

    International forms (``+``, or ``00`` where that is the region's international prefix) are
    settled either way; national forms are only ever accepted, because a rejected national number
    may deserve the "lost its leading 0 or +" reason, which :func:`normalise` works out.
    """
    n = len(trimmed)
    shape = _np(pc.match_substring_regex(trimmed, _SHAPE)) & ~_np(pc.match_substring_regex(trimmed, _DECIMAL_RE2))
    rows = np.flatnonzero(shape)
    if len(rows) == 0:
        return []
    values = trimmed.take(pa.array(rows)) if len(rows) < n else trimmed
    plus = _np(pc.starts_with(values, "+"))
    digits = pc.utf8_ltrim(_strip_separators(values), characters="+")
    out = _international(rows[plus], digits.filter(pa.array(plus)))
    position = np.full(n, -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    for region, members in region_rows:
        metadata = _metadata(region)
        if metadata is None:
            continue
        mine = ~plus if members is None else ~plus & _member_mask(position, members, len(rows))
        if mine.any():
            out += _local(rows[mine], digits.filter(pa.array(mine)), metadata)
    return out


def _local(rows: np.ndarray, digits: pa.Array, metadata: PhoneMetadata) -> list[_Settled]:
    """Values without ``+`` read with a default region: ``00`` international or national forms."""
    out: list[_Settled] = []
    idd = _np(pc.starts_with(digits, "00")) & ~_np(pc.starts_with(digits, "000"))
    if metadata.international_prefix == "00":
        out += _international(rows[idd], pc.utf8_slice_codeunits(digits.filter(pa.array(idd)), 2))
    national = ~_np(pc.starts_with(digits, "00"))
    if metadata.international_prefix not in (None, "00"):
        prefix_re = _re2_prefix(metadata.international_prefix)
        if prefix_re is None:
            return out
        national &= ~_np(pc.match_substring_regex(digits, prefix_re))
    # Digits that start with the region's own calling code go through phonenumbers' heuristic.
    national &= ~_np(pc.starts_with(digits, str(metadata.country_code)))
    if national.any():
        out += _validate(rows[national], digits.filter(pa.array(national)), int(metadata.country_code or 0),
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
    dirty = _np(pc.match_substring_regex(values, _STRIP))
    if not dirty.any():
        return values
    stripped = pc.replace_substring_regex(values.filter(pa.array(dirty)), _STRIP, "")
    return pc.replace_with_mask(values, pa.array(dirty), stripped)


def _international(rows: np.ndarray, digits: pa.Array) -> list[_Settled]:
    """Values written after an international prefix: ``digits`` starts with the calling code."""
    if len(rows) == 0:
        return []
    lengths = _np(pc.utf8_length(digits))
    # phonenumbers: more than two digits after the prefix, no leading 0, the shortest known code.
    usable = (lengths > _MIN_NSN) & ~_np(pc.starts_with(digits, "0"))
    code = np.zeros(len(rows), dtype=np.int64)
    for size in (3, 2, 1):
        head = pc.utf8_slice_codeunits(digits, 0, size)
        known = _np(pc.is_in(head, value_set=_CALLING_CODES)) & (lengths >= size)
        code = np.where(known, _to_int(head, known), code)
    # Sort the usable rows by calling code once; each code's rows are then a zero-copy slice.
    chosen = np.flatnonzero(usable & (code > 0))
    if len(chosen) == 0:
        return []
    chosen = chosen[np.argsort(code[chosen], kind="stable")]
    ordered = _subset(digits, chosen)
    codes, starts = np.unique(code[chosen], return_index=True)
    ends = np.append(starts[1:], len(chosen))
    out = []
    for cc, start, end in zip(codes.tolist(), starts.tolist(), ends.tolist(), strict=True):
        metadata = _metadata(phonenumbers.region_code_for_country_code(cc))
        if metadata is not None:
            nsn = pc.utf8_slice_codeunits(ordered.slice(start, end - start), len(str(cc)))
            out += _validate(rows[chosen[start:end]], nsn, cc, metadata, settle_rejects=True)
    return out


def _subset(values: pa.Array, idx: np.ndarray) -> pa.Array:
    """``values.take(idx)``, without copying when ``idx`` is every row in order."""
    if len(idx) == len(values) and (len(idx) == 0 or (idx[0] == 0 and idx[-1] == len(idx) - 1)):
        return values
    return values.take(pa.array(idx))


def _to_int(head: pa.Array, known: np.ndarray) -> np.ndarray:
    """Integer value of the ``known`` entries of a digit-string array (0 elsewhere)."""
    return _np(pc.cast(pc.if_else(pa.array(known), head, "0"), pa.int64()))


def _validate(rows: np.ndarray, nsn: pa.Array, cc: int, metadata: PhoneMetadata, *,
              settle_rejects: bool) -> list[_Settled]:
    """Validate national numbers of calling code ``cc`` (``metadata`` drives prefix stripping)."""
    lengths = _np(pc.utf8_length(nsn))
    stripped = _strip_national_prefix(nsn, lengths, metadata)
    if stripped is None:
        return []
    nsn, new_lengths, known = stripped
    # phonenumbers raises below 2 digits (before stripping) and above 17 (after).
    keep = known & (lengths >= _MIN_NSN) & (new_lengths <= _MAX_NSN)
    if not keep.any():
        return []
    idx = np.flatnonzero(keep)
    rows, nsn, lengths = rows[idx], _subset(nsn, idx), new_lengths[idx]
    out = []
    resolved = np.zeros(len(rows), dtype=bool)
    for region, members in _resolve_regions(cc, nsn, lengths):
        resolved[members] = True
        out += _judge(rows[members], _subset(nsn, members), lengths[members], cc, region, settle_rejects)
    if settle_rejects and not resolved.all():
        # No region claims these numbers: phonenumbers calls them invalid.
        left = np.flatnonzero(~resolved)
        reason = reason_invalid(phonenumbers.region_code_for_country_code(cc))
        out.append(_rejected(rows[left], reason))
    return out


def _judge(rows: np.ndarray, nsn: pa.Array, lengths: np.ndarray, cc: int, region: str,
           settle_rejects: bool) -> list[_Settled]:
    """Accept the mobile-capable numbers of ``region``; with ``settle_rejects``, reject the rest."""
    rules = _rules(region)
    ok = _mobile_capable(nsn, lengths, rules)
    out = []
    if ok.any():
        good = nsn.filter(pa.array(ok))
        e164 = pc.binary_join_element_wise(pa.scalar(f"+{cc}", pa.large_string()), good,
                                           pa.scalar("", pa.large_string()))
        count = int(ok.sum())
        out.append(_Settled(rows[ok], e164, _repeat(region, count), _repeat("", count)))
    if settle_rejects and not ok.all():
        bad = np.flatnonzero(~ok)
        reasons = _reject_reasons(nsn.take(pa.array(bad)), lengths[bad], rules, region)
        out.append(_Settled(rows[bad], _repeat("", len(bad)), _repeat("", len(bad)), reasons))
    return out


def _rejected(rows: np.ndarray, reason: str) -> _Settled:
    count = len(rows)
    return _Settled(rows, _repeat("", count), _repeat("", count), _repeat(reason, count))


def _reject_reasons(nsn: pa.Array, lengths: np.ndarray, rules: _Rules, region: str) -> pa.Array:
    """The reason :func:`normalise` gives a number that is not mobile-capable in ``region``."""
    reasons = np.full(len(nsn), reason_invalid(region), dtype=object)
    pending = _matches(nsn, lengths, rules.general)
    for kind, desc in rules.types:
        if not pending.any():
            break
        idx = np.flatnonzero(pending)
        hit = _matches(nsn.take(pa.array(idx)), lengths[idx], desc)
        reasons[idx[hit]] = reason_not_mobile(kind)
        pending[idx[hit]] = False
    return pa.array(reasons, pa.large_string())


def _strip_national_prefix(nsn: pa.Array, lengths: np.ndarray, metadata: PhoneMetadata,
                           ) -> tuple[pa.Array, np.ndarray, np.ndarray] | None:
    """Apply phonenumbers' national-prefix rule: ``(nsn, lengths, known)``.

    ``known`` is False for rows the fast path cannot settle; the answer is None when the rule
    cannot be evaluated with RE2 at all. Plain digit prefixes (``0``, ``0|180020``) are applied
    exactly; any other rule leaves the rows it matches to the slow path.
    """
    pattern = metadata.national_prefix_for_parsing
    known = np.ones(len(nsn), dtype=bool)
    if not pattern:
        return nsn, lengths, known
    literals = _literal_alternatives(pattern)
    if literals is None or metadata.national_prefix_transform_rule:
        prefix_re = _re2_prefix(pattern)
        if prefix_re is None:
            return None
        if not _empty_match_is_inert(pattern):
            return nsn, lengths, ~_np(pc.match_substring_regex(nsn, prefix_re))
        # An empty match strips nothing and transforms nothing: those rows are unchanged.
        rest = pc.replace_substring_regex(nsn, prefix_re, "", max_replacements=1)
        return nsn, lengths, _np(pc.utf8_length(rest)) == lengths
    general = metadata.general_desc
    taken = np.zeros(len(nsn), dtype=bool)
    lengths = lengths.copy()
    for literal in literals:
        hit = _np(pc.starts_with(nsn, literal)) & ~taken
        taken |= hit
        if not hit.any():
            continue
        idx = np.flatnonzero(hit)
        original = nsn.take(pa.array(idx))
        shorter = pc.utf8_slice_codeunits(original, len(literal))
        short_len = lengths[idx] - len(literal)
        # _maybe_strip_national_prefix_carrier_code, then parse's length test on the result.
        viable_before = _pattern_match(original, general)
        viable_after = _pattern_match(shorter, general)
        strip = ~(viable_before & ~viable_after) & _length_allows_strip(short_len, general)
        if strip.any():
            mask = np.zeros(len(nsn), dtype=bool)
            mask[idx[strip]] = True
            nsn = pc.replace_with_mask(nsn, pa.array(mask), shorter.filter(pa.array(strip)))
            lengths[idx[strip]] = short_len[strip]
    return nsn, lengths, known


@functools.cache
def _empty_match_is_inert(pattern: str) -> bool:
    """True when a zero-length match of the national-prefix rule can only leave a number as is.

    Without anchors, the path a regex takes to match nothing is the same whatever follows, so
    matching the empty string shows it: no group may take part (a group would trigger the
    transform rule). Patterns that cannot match the empty string qualify too (no empty matches).
    """
    if "$" in pattern or "\\b" in pattern:
        return False
    found = re.match(pattern, "")
    return found is None or all(group is None for group in found.groups())


def _literal_alternatives(pattern: str) -> tuple[str, ...] | None:
    """``("0", "180020")`` for ``0|180020``; None when the pattern is more than digit literals."""
    parts = tuple(pattern.split("|"))
    return parts if all(p.isascii() and p.isdigit() for p in parts) else None


def _length_allows_strip(lengths: np.ndarray, general: object) -> np.ndarray:
    """phonenumbers keeps a stripped national number unless its length is too short, local-only
    or impossible for the region (``_test_number_length`` on the general description)."""
    possible = tuple(getattr(general, "possible_length", ()) or ())
    local = tuple(getattr(general, "possible_length_local_only", ()) or ())
    if not possible:
        return np.zeros(len(lengths), dtype=bool)
    ok = np.isin(lengths, possible) | (lengths > max(possible))
    return ok & ~np.isin(lengths, local)


def _resolve_regions(cc: int, nsn: pa.Array, lengths: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """``region_code_for_number`` for every row: ``[(region, member indices)]``.

    Rows no region claims are left out: phonenumbers finds no region for them, so they are invalid.
    """
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(cc, ())
    if len(regions) == 1:
        return [(regions[0], np.arange(len(nsn)))] if regions[0] != "001" else []
    pending = np.ones(len(nsn), dtype=bool)
    out: list[tuple[str, np.ndarray]] = []
    for region in regions:
        metadata = _metadata(region)
        if metadata is None or not pending.any():
            continue
        idx = np.flatnonzero(pending)
        sub = nsn.take(pa.array(idx))
        if metadata.leading_digits is not None:
            prefix_re = _re2_prefix(metadata.leading_digits)
            if prefix_re is None:
                return out
            hit = _np(pc.match_substring_regex(sub, prefix_re))
        else:
            hit = _any_type(sub, lengths[idx], _rules(region))
        if hit.any():
            out.append((region, idx[hit]))
            pending[idx[hit]] = False
    return out


@dataclass(frozen=True, slots=True)
class _Desc:
    """One number description as an anchored RE2 pattern and its possible lengths (empty: any)."""

    pattern: str
    lengths: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class _Rules:
    """What ``_number_type_helper`` needs for one region, in vectorisable form.

    ``excluded`` merges the non-mobile type descriptions that share possible lengths (one regex
    pass each); ``types`` keeps them apart, in phonenumbers' order, to name a rejected number's type.
    """

    general: _Desc | None
    excluded: tuple[_Desc, ...]
    types: tuple[tuple[int, _Desc], ...]
    fixed: _Desc | None
    mobile: _Desc | None
    same_mobile_and_fixed: bool

    @property
    def capable(self) -> _Desc | None:
        """The description a mobile-capable number must match (see ``_number_type_helper``)."""
        return self.fixed if self.same_mobile_and_fixed else self.mobile


_EXCLUDED_TYPES = (
    ("premium_rate", PhoneNumberType.PREMIUM_RATE),
    ("toll_free", PhoneNumberType.TOLL_FREE),
    ("shared_cost", PhoneNumberType.SHARED_COST),
    ("voip", PhoneNumberType.VOIP),
    ("personal_number", PhoneNumberType.PERSONAL_NUMBER),
    ("pager", PhoneNumberType.PAGER),
    ("uan", PhoneNumberType.UAN),
    ("voicemail", PhoneNumberType.VOICEMAIL),
)


@functools.cache
def _metadata(region: str | None) -> PhoneMetadata | None:
    if not region or region == "001":
        return None
    return PhoneMetadata.metadata_for_region(region.upper(), None)


@functools.cache
def _rules(region: str) -> _Rules:
    metadata = _metadata(region)
    assert metadata is not None
    merged: dict[tuple[int, ...], list[str]] = {}
    types: list[tuple[int, _Desc]] = []
    for name, kind in _EXCLUDED_TYPES:
        desc = _desc(getattr(metadata, name))
        if desc is not None:
            types.append((kind, desc))
            merged.setdefault(desc.lengths, []).append(getattr(metadata, name).national_number_pattern)
    excluded = tuple(_Desc(_anchor("|".join(f"(?:{p})" for p in patterns)), lengths)
                     for lengths, patterns in merged.items())
    fixed = _desc(metadata.fixed_line)
    same = bool(metadata.same_mobile_and_fixed_line_pattern)
    if fixed is not None and not same:
        types.append((PhoneNumberType.FIXED_LINE, fixed))
    return _Rules(general=_desc(metadata.general_desc), excluded=excluded, types=tuple(types), fixed=fixed,
                  mobile=_desc(metadata.mobile), same_mobile_and_fixed=same)


def _desc(desc: object) -> _Desc | None:
    pattern = getattr(desc, "national_number_pattern", None) if desc is not None else None
    if not pattern:
        return None
    return _Desc(_anchor(pattern), tuple(getattr(desc, "possible_length", ()) or ()))


def _anchor(pattern: str) -> str:
    return f"^(?:{pattern})$"


@functools.cache
def _re2_prefix(pattern: str) -> str | None:
    """``pattern`` anchored at the start, or None when RE2 cannot compile it."""
    anchored = f"^(?:{pattern})"
    try:
        pc.match_substring_regex(pa.array(["0"]), anchored)
    except pa.ArrowInvalid:
        return None
    return anchored


def _matches(nsn: pa.Array, lengths: np.ndarray, desc: _Desc | None) -> np.ndarray:
    """``_is_number_matching_desc`` for every row: possible length, then a full pattern match."""
    if desc is None:
        return np.zeros(len(nsn), dtype=bool)
    ok = np.isin(lengths, desc.lengths) if desc.lengths else np.ones(len(nsn), dtype=bool)
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        return ok
    sub = nsn if len(idx) == len(nsn) else nsn.take(pa.array(idx))
    ok[idx] = _np(pc.match_substring_regex(sub, desc.pattern))
    return ok


def _pattern_match(nsn: pa.Array, general: object) -> np.ndarray:
    """``_match_national_number`` against a description's pattern alone (no length check)."""
    desc = _desc(general)
    if desc is None:
        return np.zeros(len(nsn), dtype=bool)
    return _np(pc.match_substring_regex(nsn, desc.pattern))


def _narrow(mask: np.ndarray, nsn: pa.Array, lengths: np.ndarray, desc: _Desc | None, keep_when: bool) -> None:
    """Where ``mask`` is set, keep it only if matching ``desc`` equals ``keep_when`` (in place)."""
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return
    sub = nsn if len(idx) == len(nsn) else nsn.take(pa.array(idx))
    hit = _matches(sub, lengths[idx], desc)
    mask[idx] = hit if keep_when else ~hit


def _mobile_capable(nsn: pa.Array, lengths: np.ndarray, rules: _Rules) -> np.ndarray:
    """True where ``_number_type_helper`` gives ``MOBILE`` or ``FIXED_LINE_OR_MOBILE``."""
    ok = _matches(nsn, lengths, rules.general)
    _narrow(ok, nsn, lengths, rules.capable, keep_when=True)
    for excluded in rules.excluded:
        _narrow(ok, nsn, lengths, excluded, keep_when=False)
    return ok


def _any_type(nsn: pa.Array, lengths: np.ndarray, rules: _Rules) -> np.ndarray:
    """True where ``_number_type_helper`` gives anything but ``UNKNOWN``."""
    ok = _matches(nsn, lengths, rules.general)
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        return ok
    sub, sub_len = nsn.take(pa.array(idx)), lengths[idx]
    typed = _matches(sub, sub_len, rules.fixed)
    if not rules.same_mobile_and_fixed:
        typed |= _matches(sub, sub_len, rules.mobile)
    for excluded in rules.excluded:
        typed |= _matches(sub, sub_len, excluded)
    ok[idx] = typed
    return ok


def _np(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean or integer Arrow array as numpy (nulls read as False/0)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if values.null_count:
        values = pc.fill_null(values, False if pa.types.is_boolean(values.type) else 0)
    return values.to_numpy(zero_copy_only=False)


_CALLING_CODES = pa.array([str(cc) for cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE], pa.large_string())
