"""What a worker process needs to send batches, built once per process, and the lanes it uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from dispatcher.instasent.client import InstasentClient
from dispatcher.instasent.wire import SMS_BULK, SMS_LIST
from dispatcher.keys import Keys
from dispatcher.schema.names import DEFAULT_ACCOUNT
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.ratelimit import Lane, RateLimiter, learned_limit
from dispatcher.sending.store import CampaignStore
from dispatcher.sending.tenancy import AccountClients
from dispatcher.settings import Settings


@dataclass
class SendContext:
    """Everything a worker process needs to send batches; built once per process.

    Without ``accounts`` every campaign is sent with ``client`` on the lanes of ``organization``;
    with it, :meth:`for_campaign` gives each campaign its account's client and organization's lanes.
    """

    settings: Settings
    client: InstasentClient
    store: CampaignStore
    ops: BatchOps
    limiter: RateLimiter
    #: Current Unix time in seconds; tests inject their own to check send windows and expiry.
    clock: Callable[[], float] = time.time
    #: The account the batches are sent for, and its organization ("" when unknown).
    account: str = DEFAULT_ACCOUNT
    organization: str = ""
    #: Each account's client (a worker thread's); None: ``client`` sends for every campaign.
    accounts: AccountClients | None = None

    def for_campaign(self, campaign_id: str) -> SendContext:
        """This context as campaign ``campaign_id`` sends: its account's client, its organization's
        lanes (itself when they are already these). Cheap: the campaign's account is read once per
        process and the account's client kept per thread (see :mod:`dispatcher.sending.tenancy`).

        Raises:
            UnknownItem: when the campaign's account was removed.
            ConfigurationError: when its token cannot be decrypted.
        """
        if self.accounts is None:
            return self
        account, organization = self.accounts.campaign(campaign_id)
        client = self.accounts.client(account)
        if account == self.account and organization == self.organization and client is self.client:
            return self
        return replace(self, client=client, account=account, organization=organization)

    def _per_minute(self, lane: str) -> int:
        """The lane's requests per minute: the setting, or less when the organization's
        ``X-RateLimit-Limit`` said so (only for a known organization: the ``default`` account's
        lanes keep the setting alone, as before accounts)."""
        limit = self.settings.rate_limit_per_min
        learned = learned_limit(lane) if self.organization else None
        return min(limit, learned) if learned else limit

    @property
    def bulk_lane(self) -> Lane:
        """The lane of ``POST /sms/bulk`` for the organization, named as the endpoint it paces."""
        name = Keys.lane(self.organization, SMS_BULK)
        return Lane(name, self._per_minute(name), self.settings.message_rate_per_s)

    @property
    def list_lane(self) -> Lane:
        """The lane of ``GET /sms`` (the clientId searches of a reconciliation) for the organization."""
        name = Keys.lane(self.organization, SMS_LIST)
        return Lane(name, self._per_minute(name))
