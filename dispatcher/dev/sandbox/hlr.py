"""Deterministic HLR (lookup) answers, so tests can choose the outcome by the number they use.

The rule, on the last digits of the E.164 number:

- ends in ``13`` → ``invalid`` (no operator data: ``mcc``, ``mnc`` and ``network`` are null);
- ends in ``37`` → ``unreachable`` (the operator is known, the handset is not attached);
- anything else → ``valid``.

A number that is not invalid is ``ported`` when its third-to-last digit is ``9``. Its ``mnc`` is
``01`` to ``04`` (last three digits modulo 4, plus 1), ``network`` is ``"<country> Mobile <n>"``, and
``mcc`` comes from :data:`MCC` (null for countries missing from it).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Last two digits that make a lookup ``invalid``.
INVALID_SUFFIX = "13"
#: Last two digits that make a lookup ``unreachable``.
UNREACHABLE_SUFFIX = "37"

#: Mobile country code for common destinations.
MCC: dict[str, str] = {
    "ES": "214", "PT": "268", "FR": "208", "DE": "262", "IT": "222", "GB": "234", "IE": "272",
    "NL": "204", "BE": "206", "CH": "228", "AT": "232", "PL": "260", "SE": "240", "NO": "242",
    "US": "310", "CA": "302", "MX": "334", "BR": "724", "AR": "722", "CO": "732", "CL": "730",
    "PE": "716", "MA": "604", "IN": "404",
}


@dataclass(frozen=True, slots=True)
class HlrAnswer:
    """What the network says about one number."""

    status: str
    mcc: str | None
    mnc: str | None
    network: str | None
    ported: bool


def hlr_status(e164: str) -> str:
    """``invalid``, ``unreachable`` or ``valid`` for ``e164`` (see the module docstring)."""
    if e164.endswith(INVALID_SUFFIX):
        return "invalid"
    if e164.endswith(UNREACHABLE_SUFFIX):
        return "unreachable"
    return "valid"


def hlr_answer(e164: str, region: str) -> HlrAnswer:
    """The full deterministic answer for ``e164``, whose country is ``region``."""
    status = hlr_status(e164)
    if status == "invalid":
        return HlrAnswer(status, None, None, None, ported=False)
    operator = int(e164[-3:]) % 4 + 1
    return HlrAnswer(
        status=status,
        mcc=MCC.get(region),
        mnc=f"{operator:02d}",
        network=f"{region} Mobile {operator}",
        ported=e164[-3] == "9",
    )
