"""What the campaign preflight checks, from a recipient file to the exact messages, their cost and
the rejects, and the pieces every preflight shares: the client it asks (:class:`PreflightClient`),
the prices and balance read first (:class:`Pricing`), and :func:`check_file`. The preflight itself
reads the file chunk by chunk (:mod:`dispatcher.preflight.stream`); commands call it through
:func:`dispatcher.sending.submission.preflight`.

Steps, in order (each row is judged by the first step that drops it):

1. **Read** the file in chunks (:mod:`dispatcher.preflight.loader`); blank rows are skipped and not counted.
2. **Per row** (:mod:`dispatcher.preflight.rows`): the phone number (:mod:`dispatcher.preflight.phones`,
   with ``--country`` or the row's country column as default region), the text (``--text`` template
   or ``--text-column``; empty is a reject), the sender (``from`` column or ``--from``, 1..11
   characters), the parts and encoding (:func:`dispatcher.preflight.render.measure`); with
   ``--gsm-only`` a text that needs Unicode is a reject.
3. **Duplicates**: rows whose E.164 number an earlier kept row already has are dropped and
   *counted* (``duplicates``), not listed: the first row of each number wins.
4. **Suppression list**: suppressed numbers are dropped and *counted* (``suppressed``), not listed:
   they are a deliberate exclusion, not a problem with the file.
5. **Prices**: a destination without an SMS price is a reject (``no price for destination XX``).
6. **HLR** (unless ``hlr`` is off): one lookup per remaining number not in the cache; ``invalid``
   and ``unreachable`` numbers are rejects. Lookups are refused up front if they alone would
   exceed the balance or ``max_cost``.

So ``rows == valid + rejected + duplicates + suppressed`` and ``valid`` is the number of messages.
The balance is read before any lookup is paid for. The options and the answer are in
:mod:`dispatcher.preflight.result`, with :func:`~dispatcher.preflight.result.check_budget`, the guard
that refuses a campaign costing more than the balance or ``max_cost``; the CLI calls it after showing
the summary.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import redis

from dispatcher.errors import InputError
from dispatcher.instasent.models import Account
from dispatcher.keys import Keys
from dispatcher.preflight import fileformat, render
from dispatcher.preflight.hlr import LookupClient
from dispatcher.preflight.pricing import PriceClient, PriceList, balance, check_currency, note_balance, price_list
from dispatcher.preflight.result import PreflightOptions
from dispatcher.preflight.rows import plan_columns
from dispatcher.schema.names import DEFAULT_ACCOUNT

#: How every "empty value for {name}" reject reason starts.
EMPTY_VALUE_PREFIX = render.REASON_EMPTY_VALUE.partition("{{")[0]


class PreflightClient(LookupClient, PriceClient, Protocol):
    """The Instasent client calls the preflight makes."""


@dataclass(frozen=True, slots=True)
class Pricing:
    """Price profiles and the balance, read before any lookup is paid for."""

    sms: PriceList
    lookup: PriceList | None
    account: Account

    @classmethod
    def fetch(cls, client: PreflightClient, redis_client: redis.Redis, keys: Keys, *, lookups: bool,
              account: str = DEFAULT_ACCOUNT) -> Pricing:
        """Read them (profiles through the cache of ``account``, whose client ``client`` is).

        Raises:
            PermanentError: when the prices and the balance are in different currencies.
        """
        sms = price_list("sms", client, redis_client, keys, account=account)
        answer = balance(client)
        note_balance(redis_client, keys, answer, time.time())
        lookup = price_list("lookup", client, redis_client, keys, account=account) if lookups else None
        check_currency(answer, sms, *([lookup] if lookup is not None else []))
        return cls(sms=sms, lookup=lookup, account=answer)

    @property
    def currency(self) -> str:
        """The account's currency (the price profiles' when the account does not say)."""
        return self.account.currency or self.sms.currency


def check_file(path: str | Path, options: PreflightOptions) -> None:
    """Check, without reading the rows, paying or asking Instasent, that ``path`` is a recipient file
    that ``options`` fit: it can be read, has a phone column, every column the text names, a sender.

    Raises:
        InputError: naming what is wrong (a missing file included).
    """
    try:
        fmt = fileformat.sniff(path)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}.") from None
    plan_columns(fmt, options.validated())
