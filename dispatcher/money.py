"""Money as decimal strings: amounts are summed in :class:`~decimal.Decimal`, never in floats, and
shown in the currency's own exponent (2 decimals for EUR) or, for a unit price, with up to 4.

Prices arrive from Instasent as JSON numbers (floats here); each is turned into a Decimal through
its shortest ``repr`` (``0.045`` stays ``0.045``, not ``0.04499999...``) before anything is added
or multiplied, so ``2 x 1.08`` is ``2.16`` and never ``2.1600000000000006``.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation

#: ISO 4217 minor-unit exponents that are not 2 (every other currency has 2).
_EXPONENTS = {"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3, "CLP": 0, "ISK": 0,
              "JPY": 0, "KRW": 0, "PYG": 0, "UGX": 0, "VND": 0, "XAF": 0, "XOF": 0}
#: Decimals of a unit price (a price per part, per lookup).
UNIT_DECIMALS = 4
#: Decimals amounts are summed at (a micro-unit: finer than any price).
_MICRO = Decimal("0.000001")


def exponent(currency: str) -> int:
    """Decimals of ``currency``'s minor unit (2 unless ISO 4217 says otherwise; 2 when unknown)."""
    return _EXPONENTS.get(currency.upper(), 2)


def dec(value: float | int | str | Decimal | None) -> Decimal:
    """``value`` as a Decimal through its shortest text (a float's ``repr``), at micro-units; 0 for None.

    Raises:
        ValueError: for text that is no number, or a number that is not finite.
    """
    if value is None:
        return Decimal(0)
    try:
        text = repr(value) if isinstance(value, float) else str(value)
        amount = value if isinstance(value, Decimal) else Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not an amount: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    return amount.quantize(_MICRO, rounding=ROUND_HALF_EVEN)


def total(amount: Decimal | float | int | None, currency: str) -> str:
    """A total as a decimal string in the currency's exponent: ``"2.16"`` (EUR), ``"216"`` (JPY)."""
    places = Decimal(1).scaleb(-exponent(currency))
    # Half up, as an invoice rounds (0.225 EUR shows as 0.23), once, on the exact Decimal sum.
    return str(dec(amount).quantize(places, rounding=ROUND_HALF_UP))


def unit(amount: Decimal | float | int | None, currency: str = "") -> str:
    """A unit price as a decimal string with at least the currency's exponent and at most 4 decimals
    (``"0.045"`` -> ``"0.045"``, ``"0.05"`` -> ``"0.05"``, ``"0.04567"`` -> ``"0.0457"``)."""
    value = dec(amount).quantize(Decimal(1).scaleb(-UNIT_DECIMALS), rounding=ROUND_HALF_UP)
    text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0")
        keep = exponent(currency) if currency else 2
        whole, _, frac = text.partition(".")
        frac = frac.ljust(keep, "0")
        text = f"{whole}.{frac}" if frac else whole
    return text


def shown(amount: Decimal | float | int | None, currency: str) -> str:
    """A total for a sentence: ``"1,234.56 EUR"``, in the currency's exponent."""
    value = Decimal(total(amount, currency))
    places = exponent(currency)
    return f"{value:,.{places}f} {currency}".strip()


#: Keys whose values are money totals in the JSON objects this project answers with.
TOTAL_KEYS = frozenset({"cost", "message_cost", "lookup_cost", "balance", "cost_bound", "unicode_extra_cost",
                        "estimated_cost", "actual_cost"})
#: Keys whose values are unit prices.
UNIT_KEYS = frozenset({"unit_price", "price_per_part"})


def as_strings(data: object, currency: str) -> object:
    """``data`` (JSON-like) with every number under a money key (:data:`TOTAL_KEYS`,
    :data:`UNIT_KEYS`) turned into a decimal string in ``currency``, at any depth; other values as
    they are. Strings already there are kept."""
    if isinstance(data, dict):
        out: dict[object, object] = {}
        for key, value in data.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and key in TOTAL_KEYS:
                out[key] = total(value, currency)
            elif isinstance(value, int | float) and not isinstance(value, bool) and key in UNIT_KEYS:
                out[key] = unit(value, currency)
            else:
                out[key] = as_strings(value, currency)
        return out
    if isinstance(data, list):
        return [as_strings(item, currency) for item in data]
    return data
