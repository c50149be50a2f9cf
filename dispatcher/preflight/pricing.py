"""Prices and balance: what a campaign will cost and whether the account can pay for it.

Price profiles (SMS per part, and per lookup, per destination country) change rarely, so each is
cached in Redis under ``Keys.price_cache(kind)`` for :data:`PRICE_CACHE_TTL_S` seconds. The balance
is never cached. All amounts are in the account's currency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import redis

from dispatcher.errors import PermanentError
from dispatcher.instasent.models import Account, Price
from dispatcher.keys import Keys
from dispatcher.schema.names import DEFAULT_ACCOUNT

#: Seconds a price profile stays cached.
PRICE_CACHE_TTL_S = 3600

Kind = Literal["sms", "lookup"]


class PriceClient(Protocol):
    """What pricing needs from :class:`dispatcher.instasent.client.InstasentClient`."""

    def sms_prices(self) -> list[Price]:
        """``GET /sms/price-profile/me/countries``."""
        ...

    def lookup_prices(self) -> list[Price]:
        """``GET /lookup/price-profile/me/countries``."""
        ...

    def account(self) -> Account:
        """``GET /organization/account``."""
        ...


@dataclass(frozen=True, slots=True)
class PriceList:
    """Price per unit (SMS part or lookup) by ISO country, in ``currency``."""

    prices: dict[str, float]
    currency: str

    def get(self, country: str) -> float | None:
        """The price to ``country``, or None when it has none."""
        return self.prices.get(country)

    def lookup(self, countries: pa.Array) -> np.ndarray:
        """The price for every entry of ``countries`` (NaN where there is none), vectorised."""
        if len(countries) == 0:
            return np.zeros(0, dtype=np.float64)
        encoded = pc.dictionary_encode(countries)
        table = np.array([self.prices.get(c, np.nan) for c in encoded.dictionary.to_pylist()], dtype=np.float64)
        return table[encoded.indices.to_numpy(zero_copy_only=False)]


def price_list(kind: Kind, client: PriceClient, redis_client: redis.Redis, keys: Keys,
               ttl_s: int = PRICE_CACHE_TTL_S, account: str = DEFAULT_ACCOUNT) -> PriceList:
    """The ``sms`` or ``lookup`` price profile, from the cache or from Instasent (then cached).

    Raises:
        DispatcherError: as the client raises it when the profile must be fetched.
    """
    key = keys.price_cache(kind, account)
    raw = redis_client.get(key)
    cached = _parse_cache(raw) if raw is not None else None
    if cached is None:
        fetched = client.sms_prices() if kind == "sms" else client.lookup_prices()
        entries: list[dict[str, Any]] = [{"country": p.country, "price": p.price, "currency": p.currency}
                                         for p in fetched]
        redis_client.set(key, orjson.dumps(entries), ex=ttl_s)
    else:
        entries = cached
    currencies = {str(e["currency"]) for e in entries if e.get("currency")}
    return PriceList(prices={str(e["country"]).upper(): float(e["price"]) for e in entries},
                     currency=currencies.pop() if len(currencies) == 1 else "")


def _parse_cache(raw: bytes | str) -> list[dict[str, Any]] | None:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, list) and all(isinstance(e, dict) and "country" in e for e in data) else None


def balance(client: PriceClient) -> Account:
    """The account's available balance, fresh from Instasent."""
    return client.account()


def check_currency(account: Account, *price_lists: PriceList) -> None:
    """Make sure prices and balance use one currency.

    Raises:
        PermanentError: when a price profile is in another currency than the balance.
    """
    for prices in price_lists:
        if prices.currency and account.currency and prices.currency != account.currency:
            raise PermanentError(f"Instasent prices are in {prices.currency} but the balance is in "
                                 f"{account.currency}, so the cost cannot be checked against it.")


def money(amount: float, currency: str) -> str:
    """An amount for a sentence: at least 2 and at most 4 decimals, then the currency."""
    text = f"{amount:,.4f}".rstrip("0")
    if len(text.partition(".")[2]) < 2:
        text = f"{amount:,.2f}"
    return f"{text} {currency}".strip()
