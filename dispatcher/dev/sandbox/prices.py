"""The sandbox's price list: SMS price per part and lookup price, per destination country.

Common destinations have fixed prices (:data:`SMS_PRICES`, e.g. ES 0.045 EUR per part); every
other region of ``phonenumbers.SUPPORTED_REGIONS`` gets a stable made-up price from
:func:`formula_price`, between 0.020 and 0.100. A lookup (HLR) costs :data:`LOOKUP_PRICE`
everywhere. Prices are in the account currency; money is kept in integer micro-units
(1 EUR = 1,000,000) so a long run of charges adds up exactly.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

from dispatcher.dev.sandbox.regions import REGION_CODES

#: Money in micro-units of the currency per unit.
MICROS = 1_000_000

#: SMS price per part for common destinations.
SMS_PRICES: dict[str, float] = {
    "ES": 0.045, "PT": 0.040, "FR": 0.065, "DE": 0.075, "IT": 0.060, "GB": 0.040, "IE": 0.060,
    "NL": 0.080, "BE": 0.075, "CH": 0.055, "AT": 0.070, "PL": 0.030, "SE": 0.050, "NO": 0.055,
    "US": 0.010, "CA": 0.010, "MX": 0.035, "BR": 0.030, "AR": 0.045, "CO": 0.020, "CL": 0.040,
    "PE": 0.035, "MA": 0.060, "IN": 0.008,
}

#: Price of one lookup (HLR), for every destination.
LOOKUP_PRICE = 0.004


def formula_price(region: str) -> float:
    """A stable price for a region missing from :data:`SMS_PRICES`: 0.020 to 0.100, in 0.001 steps."""
    return round(0.020 + (zlib.crc32(region.encode()) % 81) / 1000, 3)


def sms_price(region: str) -> float | None:
    """SMS price per part to ``region`` (ISO alpha-2); None for a region ``phonenumbers`` does not know."""
    if region in SMS_PRICES:
        return SMS_PRICES[region]
    if region in REGION_CODES:
        return formula_price(region)
    return None


def to_micros(amount: float) -> int:
    """An amount of currency in micro-units, rounded to the nearest."""
    return round(amount * MICROS)


def sms_price_micros(unpriced: Iterable[str] = ()) -> dict[str, int]:
    """Region → SMS price per part in micro-units, without the ``unpriced`` regions."""
    skip = {r.upper() for r in unpriced}
    table = {}
    for region in REGION_CODES:
        price = sms_price(region)
        if price is not None and region not in skip:
            table[region] = to_micros(price)
    return table


def price_profile(prices_micros: dict[str, int], currency: str) -> list[dict[str, Any]]:
    """Price-profile entities, ``{"country", "prefix", "price", "currency"}``, sorted by country."""
    return [
        {"country": region, "prefix": REGION_CODES[region], "price": micros / MICROS, "currency": currency}
        for region, micros in sorted(prices_micros.items())
    ]
