"""phonenumbers' validity and type rules, evaluated for whole columns of national numbers.

This re-implements the parts of ``phonenumbers`` that :func:`phonenumbers.is_valid_number` and
:func:`phonenumbers.number_type` use once a number is split into calling code and national number:
national-prefix stripping, the region a number belongs to, possible lengths, the general
description, the excluded number types, then mobile or fixed line. Each rule is one vectorised RE2
full match over an Arrow array. :mod:`dispatcher.preflight.phone_columns` decides which rows reach
it; anything these rules cannot evaluate exactly is left unsettled for the reference path
(:func:`dispatcher.preflight.phones.normalise`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers import PhoneMetadata, PhoneNumberType

from dispatcher.preflight.arrow import as_numpy, repeat, subset
from dispatcher.preflight.phones import reason_invalid, reason_not_mobile

#: phonenumbers raises below 2 national digits (before prefix stripping) and above 17 (after).
MIN_NSN, MAX_NSN = 2, 17


@dataclass(frozen=True, slots=True)
class Settled:
    """Rows (original indices) the vectorised path has answered, with their answers."""

    rows: np.ndarray
    e164: pa.Array
    country: pa.Array
    reason: pa.Array


def validate(rows: np.ndarray, nsn: pa.Array, cc: int, metadata: PhoneMetadata, *,
             settle_rejects: bool) -> list[Settled]:
    """Validate national numbers of calling code ``cc`` (``metadata`` drives prefix stripping)."""
    lengths = as_numpy(pc.utf8_length(nsn))
    stripped = _strip_national_prefix(nsn, lengths, metadata)
    if stripped is None:
        return []
    nsn, new_lengths, known = stripped
    # phonenumbers raises below 2 digits (before stripping) and above 17 (after).
    keep = known & (lengths >= MIN_NSN) & (new_lengths <= MAX_NSN)
    if not keep.any():
        return []
    idx = np.flatnonzero(keep)
    rows, nsn, lengths = rows[idx], subset(nsn, idx), new_lengths[idx]
    out = []
    resolved = np.zeros(len(rows), dtype=bool)
    for region, members in _resolve_regions(cc, nsn, lengths):
        resolved[members] = True
        out += _judge(rows[members], subset(nsn, members), lengths[members], cc, region, settle_rejects)
    if settle_rejects and not resolved.all():
        # No region claims these numbers: phonenumbers calls them invalid.
        left = np.flatnonzero(~resolved)
        reason = reason_invalid(phonenumbers.region_code_for_country_code(cc))
        out.append(_rejected(rows[left], reason))
    return out


def _judge(rows: np.ndarray, nsn: pa.Array, lengths: np.ndarray, cc: int, region: str,
           settle_rejects: bool) -> list[Settled]:
    """Accept the mobile-capable numbers of ``region``; with ``settle_rejects``, reject the rest."""
    rules = _rules(region)
    ok = _mobile_capable(nsn, lengths, rules)
    out = []
    if ok.any():
        good = nsn.filter(pa.array(ok))
        e164 = pc.binary_join_element_wise(pa.scalar(f"+{cc}", pa.large_string()), good,
                                           pa.scalar("", pa.large_string()))
        count = int(ok.sum())
        out.append(Settled(rows[ok], e164, repeat(region, count), repeat("", count)))
    if settle_rejects and not ok.all():
        bad = np.flatnonzero(~ok)
        reasons = _reject_reasons(nsn.take(pa.array(bad)), lengths[bad], rules, region)
        out.append(Settled(rows[bad], repeat("", len(bad)), repeat("", len(bad)), reasons))
    return out


def _rejected(rows: np.ndarray, reason: str) -> Settled:
    count = len(rows)
    return Settled(rows, repeat("", count), repeat("", count), repeat(reason, count))


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
        prefix_re = re2_prefix(pattern)
        if prefix_re is None:
            return None
        if not _empty_match_is_inert(pattern):
            return nsn, lengths, ~as_numpy(pc.match_substring_regex(nsn, prefix_re))
        # An empty match strips nothing and transforms nothing: those rows are unchanged.
        rest = pc.replace_substring_regex(nsn, prefix_re, "", max_replacements=1)
        return nsn, lengths, as_numpy(pc.utf8_length(rest)) == lengths
    general = metadata.general_desc
    taken = np.zeros(len(nsn), dtype=bool)
    lengths = lengths.copy()
    for literal in literals:
        hit = as_numpy(pc.starts_with(nsn, literal)) & ~taken
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
        metadata = metadata_for(region)
        if metadata is None or not pending.any():
            continue
        idx = np.flatnonzero(pending)
        sub = nsn.take(pa.array(idx))
        if metadata.leading_digits is not None:
            prefix_re = re2_prefix(metadata.leading_digits)
            if prefix_re is None:
                return out
            hit = as_numpy(pc.match_substring_regex(sub, prefix_re))
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
def metadata_for(region: str | None) -> PhoneMetadata | None:
    if not region or region == "001":
        return None
    return PhoneMetadata.metadata_for_region(region.upper(), None)


@functools.cache
def _rules(region: str) -> _Rules:
    metadata = metadata_for(region)
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
def re2_prefix(pattern: str) -> str | None:
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
    ok[idx] = as_numpy(pc.match_substring_regex(sub, desc.pattern))
    return ok


def _pattern_match(nsn: pa.Array, general: object) -> np.ndarray:
    """``_match_national_number`` against a description's pattern alone (no length check)."""
    desc = _desc(general)
    if desc is None:
        return np.zeros(len(nsn), dtype=bool)
    return as_numpy(pc.match_substring_regex(nsn, desc.pattern))


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
