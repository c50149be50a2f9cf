"""Prices and balance: what a campaign will cost and whether the account can pay for it.

Price profiles (SMS per part, and per lookup, per destination country) change rarely, so each is
cached in Redis under ``Keys.price_cache(kind)`` for :data:`PRICE_CACHE_TTL_S` seconds. The balance
is never cached: each preflight asks for it, and notes what it read for the console's
``dispatcher_balance`` gauge (:func:`note_balance`), which nothing decides on. All amounts are in the
account's currency.
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
#: Seconds the balances noted for ``/metrics`` are kept after the last one noted: a week, so an
#: install that stops sending stops alerting on an old balance.
BALANCE_SEEN_TTL_S = 7 * 86400
#: Organization field of a balance whose answer named none.
UNNAMED_ORGANIZATION = "default"

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


@dataclass(frozen=True, slots=True)
class SeenBalance:
    """A balance a preflight read: ``available`` in ``currency`` at ``at`` (Unix seconds)."""

    organization: str
    available: float
    currency: str
    at: float


def note_balance(redis_client: redis.Redis, keys: Keys, account: Account, now: float) -> None:
    """Keep ``account``'s balance, read at ``now`` (Unix seconds), for ``/metrics``, one per organization."""
    entry = {"available": account.available, "currency": account.currency, "at": now}
    pipe: Any = redis_client.pipeline(transaction=False)
    pipe.hset(keys.balances(), account.organization or UNNAMED_ORGANIZATION, orjson.dumps(entry))
    pipe.expire(keys.balances(), BALANCE_SEEN_TTL_S)
    pipe.execute()


def seen_balances(redis_client: redis.Redis, keys: Keys) -> list[SeenBalance]:
    """The balances :func:`note_balance` kept, by organization (unreadable entries skipped)."""
    raw: dict[bytes, bytes] = redis_client.hgetall(keys.balances())  # type: ignore[assignment]
    seen = []
    for organization, blob in sorted(raw.items()):
        try:
            entry = orjson.loads(blob)
            seen.append(SeenBalance(organization.decode(), float(entry["available"]), str(entry["currency"]),
                                    float(entry["at"])))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return seen


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
