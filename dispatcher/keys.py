"""Every Redis key this project writes, built in one place under one prefix.

Campaign keys share the ``{prefix}:c:{campaign_id}`` stem so ``dispatcher`` can list, expire and
delete one campaign's data together. Nothing else in the code spells a key.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    """Key builder for one prefix (``Settings.key_prefix``)."""

    prefix: str = "dsp"

    # -- suppression and lookups ------------------------------------------------------------
    def suppression(self) -> str:
        """Set of E.164 numbers that must never receive a message."""
        return f"{self.prefix}:suppressed"

    def hlr(self, e164: str) -> str:
        """Cached HLR answer for one number (JSON string, with a TTL)."""
        return f"{self.prefix}:hlr:{e164}"

    def price_cache(self, kind: str) -> str:
        """Cached price profile (``sms`` or ``lookup``), JSON string with a TTL."""
        return f"{self.prefix}:prices:{kind}"

    # -- campaigns ----------------------------------------------------------------------------
    def campaigns(self) -> str:
        """Sorted set of campaign ids scored by creation time (Unix seconds)."""
        return f"{self.prefix}:campaigns"

    def campaign(self, cid: str) -> str:
        """Hash: the campaign's settings, state, counters and timestamps."""
        return f"{self.prefix}:c:{cid}"

    def batch(self, cid: str, n: int) -> str:
        """Hash: one batch's state, attempts, lease and compressed prepared messages."""
        return f"{self.prefix}:c:{cid}:b:{n}"

    def ledger(self, cid: str, n: int) -> str:
        """Hash: the per-message records of batch ``n`` (field = index in the batch)."""
        return f"{self.prefix}:c:{cid}:m:{n}"

    def delivery(self, cid: str, n: int) -> str:
        """Hash: delivery reports of batch ``n`` (field = index, value ``status|eventAt|code``)."""
        return f"{self.prefix}:c:{cid}:d:{n}"

    def inbound(self, cid: str) -> str:
        """List of JSON inbound messages (replies) received for a campaign."""
        return f"{self.prefix}:c:{cid}:inbound"

    def inbound_unmatched(self) -> str:
        """List of JSON inbound messages that name no campaign of ours."""
        return f"{self.prefix}:inbound"

    def dlr_held(self) -> str:
        """Hash: delivery reports that could not be matched yet (clientId -> JSON list)."""
        return f"{self.prefix}:dlr:held"

    def rejects(self, cid: str) -> str:
        """List of JSON rejects found by the preflight of a submitted campaign."""
        return f"{self.prefix}:c:{cid}:rejects"

    def client_ids(self, cid: str) -> str:
        """Hash: ``clientId`` -> ``batch:index``, to match delivery reports to messages."""
        return f"{self.prefix}:c:{cid}:ids"

    def loader(self, cid: str) -> str:
        """String: the lease of the process loading the campaign's list (token, expiring)."""
        return f"{self.prefix}:c:{cid}:loader"

    def parked_in(self, cid: str) -> str:
        """Sorted set of this campaign's batches waiting for a send window (score: release time)."""
        return f"{self.prefix}:c:{cid}:parked"

    def parked(self) -> str:
        """Sorted set of every campaign's parked batches, ``cid:n`` scored by release time (Unix s)."""
        return f"{self.prefix}:parked"

    # -- schedules ----------------------------------------------------------------------------
    def schedule(self, name: str) -> str:
        """Hash: a recurring campaign's definition and its last firing."""
        return f"{self.prefix}:sched:{name}"

    def schedules(self) -> str:
        """Set of schedule names."""
        return f"{self.prefix}:scheds"

    def schedule_runs(self, name: str) -> str:
        """List of JSON firing records of a schedule, newest first."""
        return f"{self.prefix}:sched:{name}:runs"

    def schedule_fired(self, name: str, due: int) -> str:
        """Marker making one due time of a schedule fire at most once."""
        return f"{self.prefix}:sched:{name}:fired:{due}"

    def redbeat_prefix(self) -> str:
        """Prefix of celery-redbeat's own keys."""
        return f"{self.prefix}:redbeat"

    # -- rate limiting ------------------------------------------------------------------------
    def rate(self, lane: str) -> str:
        """GCRA state (theoretical arrival time, ms) of one rate-limit lane."""
        return f"{self.prefix}:rl:{lane}"

    def lane_pause(self, lane: str) -> str:
        """Unix ms until which a lane is paused after a 429 or an exhausted window."""
        return f"{self.prefix}:rl:{lane}:pause"
