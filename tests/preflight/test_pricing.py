"""Price profiles (cached in Redis) and the balance, from the sandbox over HTTP."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pyarrow as pa
import pytest
import redis

from dispatcher.errors import PermanentError
from dispatcher.instasent.client import InstasentClient
from dispatcher.instasent.models import Account
from dispatcher.keys import Keys
from dispatcher.preflight.pricing import PRICE_CACHE_TTL_S, PriceList, balance, check_currency, price_list
from dispatcher.settings import Settings
from tests.helpers import SandboxHandle


@pytest.fixture()
def client(settings: Settings) -> Iterator[InstasentClient]:
    with InstasentClient.from_settings(settings) as instasent:
        yield instasent


def test_sms_and_lookup_prices_come_from_the_price_profiles(client: InstasentClient, redis_client: redis.Redis,
                                                            settings: Settings) -> None:
    keys = Keys(settings.key_prefix)
    sms = price_list("sms", client, redis_client, keys)
    lookups = price_list("lookup", client, redis_client, keys)
    assert sms.currency == "EUR" and sms.get("ES") == pytest.approx(0.045) and sms.get("PT") == pytest.approx(0.04)
    assert lookups.get("ES") == pytest.approx(0.004)
    assert sms.get("XX") is None


def test_price_profiles_are_cached_so_a_second_preflight_does_not_ask_again(
        client: InstasentClient, redis_client: redis.Redis, settings: Settings, sandbox: SandboxHandle) -> None:
    keys = Keys(settings.key_prefix)
    first = price_list("sms", client, redis_client, keys)
    asked = sandbox.stats()["requests"]
    assert price_list("sms", client, redis_client, keys) == first
    assert sandbox.stats()["requests"] == asked
    assert 0 < redis_client.ttl(keys.price_cache("sms")) <= PRICE_CACHE_TTL_S


def test_an_unpriced_destination_has_no_price(client: InstasentClient, redis_client: redis.Redis,
                                              settings: Settings, sandbox: SandboxHandle) -> None:
    sandbox.reset(unpriced_countries=["PT"])
    prices = price_list("sms", client, redis_client, Keys(settings.key_prefix))
    assert prices.get("PT") is None
    per_part = prices.lookup(pa.array(["ES", "PT", "ES"], pa.large_string()))
    assert per_part[0] == pytest.approx(0.045) and math.isnan(per_part[1])


def test_the_balance_is_read_fresh_from_the_account(client: InstasentClient, sandbox: SandboxHandle) -> None:
    sandbox.reset(balance=12.5)
    assert balance(client) == Account(available=12.5, currency="EUR")
    sandbox.reset(balance=3.0)
    assert balance(client).available == 3.0


def test_prices_in_another_currency_than_the_balance_are_refused() -> None:
    check_currency(Account(10.0, "EUR"), PriceList({"ES": 0.04}, "EUR"), PriceList({}, ""))
    with pytest.raises(PermanentError, match="prices are in USD but the balance is in EUR"):
        check_currency(Account(10.0, "EUR"), PriceList({"ES": 0.04}, "USD"))
