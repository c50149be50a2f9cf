"""E.164 number → ISO region, fast enough to run on every bulk item (about 1 µs, no parsing).

Country calling codes form a prefix code (no code is the prefix of another), so the first of the
number's 1-, 2- or 3-digit prefixes found in :data:`CALLING_CODES` is its calling code. A code
shared by several regions resolves like ``phonenumbers`` does, from tables built once at import:

- ``+1`` (NANP) by its 3-digit area code (``+1 416`` → CA, ``+1 787`` → PR, unknown → US);
- the other shared codes in ``phonenumbers``' order: a region owns the number when it starts with
  the region's leading digits (``+7 7`` → KZ, ``+47 79`` → SJ) or, for a region without leading
  digits, when its numbering plan describes the number (``+44 1534`` → JE); else the main region.

Non-geographic codes (``+800``, ``+882``, …) are unknown here: they have no country.
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata


def _geographic_codes() -> dict[str, tuple[str, ...]]:
    """Calling code (digits) → its geographic regions, main region first."""
    codes: dict[str, tuple[str, ...]] = {}
    for code, regions in COUNTRY_CODE_TO_REGION_CODE.items():
        geographic = tuple(r for r in regions if r in phonenumbers.SUPPORTED_REGIONS)
        if geographic:
            codes[str(code)] = geographic
    return codes


_REGIONS_BY_CODE = _geographic_codes()

#: Calling code (digits, no ``+``) → main ISO region, for every geographic code.
CALLING_CODES: dict[str, str] = {code: regions[0] for code, regions in _REGIONS_BY_CODE.items()}

#: ISO region → its calling code (digits), for every region in ``phonenumbers.SUPPORTED_REGIONS``.
REGION_CODES: dict[str, str] = {
    region: code for code, regions in _REGIONS_BY_CODE.items() for region in regions
}


#: Number types a region's plan describes, as ``phonenumbers`` checks them to pick a region.
_DESCS = ("fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost", "personal_number", "voip",
          "pager", "uan", "voicemail")


def _plan_pattern(region: str) -> re.Pattern[str] | None:
    """One regex for every national number of ``region``'s plan; None if it declares none."""
    metadata = PhoneMetadata.metadata_for_region(region)
    if metadata is None:
        return None
    patterns = [desc.national_number_pattern for name in _DESCS
                if (desc := getattr(metadata, name, None)) is not None and desc.national_number_pattern]
    return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None


def _shared_code_rules() -> dict[str, tuple[tuple[str, re.Pattern[str], bool], ...]]:
    """For each shared code except ``+1``, in ``phonenumbers``' order: (region, pattern, is_prefix).

    A region that declares leading digits owns the numbers starting with them; any other region
    owns the numbers its plan describes.
    """
    shared: dict[str, tuple[tuple[str, re.Pattern[str], bool], ...]] = {}
    for code, regions in _REGIONS_BY_CODE.items():
        if code == "1" or len(regions) < 2:
            continue
        rules = []
        for region in regions:
            metadata = PhoneMetadata.metadata_for_region(region)
            if metadata is not None and metadata.leading_digits:
                rules.append((region, re.compile(metadata.leading_digits), True))
            elif (plan := _plan_pattern(region)) is not None:
                rules.append((region, plan, False))
        shared[code] = tuple(rules)
    return shared


def _nanp_area_codes() -> dict[str, str]:
    """Area code → region for the ``+1`` regions other than the US (CA, PR, JM, …)."""
    table: dict[str, str] = {}
    for region in _REGIONS_BY_CODE["1"][1:]:
        metadata = PhoneMetadata.metadata_for_region(region)
        if metadata is None:
            continue
        if metadata.leading_digits:
            leading = re.compile(metadata.leading_digits)
            matches = [f"{ac}" for ac in range(200, 1000) if leading.match(f"{ac}2345678")]
        else:
            sources = [d.national_number_pattern for d in (metadata.fixed_line, metadata.mobile) if d is not None]
            patterns = [re.compile(source) for source in sources if source]
            matches = [f"{ac}" for ac in range(200, 1000)
                       if any(p.fullmatch(f"{ac}2345678") for p in patterns)]
        for area_code in matches:
            table.setdefault(area_code, region)
    return table


_SHARED = _shared_code_rules()
_NANP = _nanp_area_codes()


def calling_code_of(e164: str) -> str | None:
    """The calling code (digits) of ``+<digits>``; None when no geographic code matches."""
    for size in (1, 2, 3):
        code = e164[1:1 + size]
        if code in CALLING_CODES:
            return code
    return None


def region_for_e164(e164: str) -> str | None:
    """ISO region of a syntactically valid E.164 number (``+34666000000`` → ``ES``).

    Returns None when the number has no geographic calling code. The number itself is not
    validated against the region's numbering plan.
    """
    for size in (1, 2, 3):
        code = e164[1:1 + size]
        region = CALLING_CODES.get(code)
        if region is None:
            continue
        if code == "1":
            return _NANP.get(e164[2:5], region)
        rules = _SHARED.get(code)
        if rules:
            national = e164[1 + size:]
            for candidate, pattern, is_prefix in rules:
                if (pattern.match(national) if is_prefix else pattern.fullmatch(national)) is not None:
                    return candidate
        return region
    return None
