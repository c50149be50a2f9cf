"""Phone numbers to E.164, with a plain reason for every number that cannot receive an SMS.

The answer for one number is :func:`normalise`: ``phonenumbers.parse`` with the row's default
region, ``is_valid_number``, ``number_type`` and ``format_number(E164)``, plus a thin policy on top:

* a number is kept only when its type is ``MOBILE`` or ``FIXED_LINE_OR_MOBILE`` (the metadata
  cannot tell the two apart in some countries, such as the US);
* values a spreadsheet has damaged (``3.4612E+10``, ``34612345678.0``) are rejected as such, and a
  number that is invalid as written but valid with a leading ``+`` or ``0`` is rejected with a
  reason that says it probably lost that prefix. A number phonenumbers itself accepts without its
  ``+`` (``34612345678`` with the default region ES) is kept, as phonenumbers decides.

This module is the reference path, one number at a time. The same answers for a whole column, fast,
come from :func:`dispatcher.preflight.phone_columns.normalise_many`, which checks the common shapes
against phonenumbers' metadata with vectorised rules (:mod:`dispatcher.preflight.phone_metadata`)
and sends every value it cannot prove valid back through :func:`normalise`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

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

