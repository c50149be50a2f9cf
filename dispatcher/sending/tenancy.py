"""Which account a campaign sends for, in a worker: its client, and its organization's lanes and money.

Every campaign names its account (``account``) and that account's organization at submit time
(``organization``) in its hash; both never change, so a worker process reads them once per
campaign (:func:`campaign_account`). A worker thread keeps one Instasent client per account
(:class:`AccountClients`), its token decrypted here, in the worker, from the account book (never
in a task's arguments), and asks the book again every :data:`ACCOUNT_TTL_S` seconds, so an account
removed, or removed and added again with another token, takes effect within that time.

Instasent limits and bills per organization: a 402 (or the balance guard) is the organization's,
so :func:`pause_organization` pauses every sending campaign of it, and no other.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from dispatcher.errors import DispatcherError
from dispatcher.instasent.client import InstasentClient
from dispatcher.keys import Keys
from dispatcher.schema.names import DEFAULT_ACCOUNT, SENDING, State
from dispatcher.sending.accounts import AccountBook
from dispatcher.sending.store import CampaignStore
from dispatcher.settings import Settings

#: Seconds a worker thread uses an account's token before asking the account book again.
ACCOUNT_TTL_S = 30.0
#: Campaigns whose account a process remembers before it forgets them all (they are read again).
_MAX_REMEMBERED = 10_000
#: Campaign ids read per round trip when looking for an organization's campaigns.
_SCAN_CHUNK = 500

_lock = threading.Lock()
#: (key prefix, campaign id) -> (account, organization), for this process.
_campaigns: dict[tuple[str, str], tuple[str, str]] = {}


def campaign_account(client: redis.Redis, keys: Keys, campaign_id: str) -> tuple[str, str]:
    """``(account, organization)`` of a campaign, read once per process (they never change).

    A campaign stored before accounts existed (or one gone from Redis) is ``("default", "")``;
    a campaign gone is not remembered, so one created later under that id would be read.
    """
    key = (keys.prefix, campaign_id)
    known = _campaigns.get(key)
    if known is not None:
        return known
    exists, account, organization = client.hmget(keys.campaign(campaign_id), "id", "account", "organization")
    found = (_text(account) or DEFAULT_ACCOUNT, _text(organization))
    if exists is not None:
        with _lock:
            if len(_campaigns) >= _MAX_REMEMBERED:
                _campaigns.clear()
            _campaigns[key] = found
    return found


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


@dataclass(slots=True)
class _Held:
    """A client of one account, the token it was made with, and until when (monotonic s) it is trusted."""

    client: InstasentClient
    token: str
    base_url: str
    fresh_until: float


class AccountClients:
    """One worker thread's Instasent clients, one per account (``default`` is the thread's own).

    ``make_client(settings)`` builds a client for an account's settings (the worker's kind of
    client, with its timing hooks); ``clock`` is monotonic seconds.
    """

    def __init__(self, book: AccountBook, default: InstasentClient,
                 make_client: Callable[[Settings], InstasentClient], *, ttl_s: float = ACCOUNT_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.book = book
        self.default = default
        self.make_client = make_client
        self.ttl_s = ttl_s
        self.clock = clock
        self._held: dict[str, _Held] = {}

    def campaign(self, campaign_id: str) -> tuple[str, str]:
        """``(account, organization)`` of a campaign (see :func:`campaign_account`)."""
        return campaign_account(self.book.redis, self.book.keys, campaign_id)

    def client(self, account: str) -> InstasentClient:
        """The client of ``account``, made again when its token or base URL changed.

        Raises:
            UnknownItem: when no account has that name (it was removed).
            ConfigurationError: when its token cannot be decrypted (``DISPATCHER_SECRET_KEY``).
        """
        if account == DEFAULT_ACCOUNT:
            return self.default
        now = self.clock()
        held = self._held.get(account)
        if held is not None and now < held.fresh_until:
            return held.client
        try:
            resolved = self.book.resolve(account)
        except DispatcherError:
            self._drop(account)
            raise
        token = resolved.settings.instasent_token.reveal()
        base_url = resolved.settings.instasent_base_url
        if held is not None and held.token == token and held.base_url == base_url:
            held.fresh_until = now + self.ttl_s
            return held.client
        self._drop(account)
        fresh = _Held(self.make_client(resolved.settings), token, base_url, now + self.ttl_s)
        self._held[account] = fresh
        return fresh.client

    def _drop(self, account: str) -> None:
        held = self._held.pop(account, None)
        if held is not None:
            with contextlib.suppress(Exception):  # closing a client must not hide why it was dropped
                held.client.close()

    def close(self) -> None:
        """Close every client but the default one (its owner closes it)."""
        for account in list(self._held):
            self._drop(account)


def same_money(account: str, organization: str, other_account: str, other_organization: str) -> bool:
    """Whether two campaigns spend from one balance: the same organization, or (organization
    unknown) the same account."""
    if organization or other_organization:
        return organization == other_organization
    return account == other_account


def pause_organization(store: CampaignStore, account: str, organization: str, reason: str,
                       skip: str = "") -> list[str]:
    """Pause every sending campaign that spends from the balance of ``organization`` (of
    ``account`` when the organization is unknown), but ``skip``; returns their ids.

    A 402 is the organization's: its other campaigns would each meet it too, while the campaigns
    of other organizations have money of their own and go on.
    """
    paused: list[str] = []
    sending = {s.value for s in SENDING}
    total = store.count()
    for start in range(0, total, _SCAN_CHUNK):
        ids = [i.decode() for i in store.redis.zrange(store.keys.campaigns(), start, start + _SCAN_CHUNK - 1)]
        pipe = store.redis.pipeline(transaction=False)
        for campaign_id in ids:
            pipe.hmget(store.keys.campaign(campaign_id), "state", "account", "organization")
        for campaign_id, (state, acct, org) in zip(ids, pipe.execute(), strict=True):
            if campaign_id == skip or state is None or state.decode() not in sending:
                continue
            if not same_money(account, organization, _text(acct) or DEFAULT_ACCOUNT, _text(org)):
                continue
            with contextlib.suppress(DispatcherError):  # moved meanwhile (paused, cancelled, done)
                store.transition(campaign_id, State.PAUSED, reason)
                paused.append(campaign_id)
    return paused
