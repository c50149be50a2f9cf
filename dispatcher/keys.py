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

    def account_suppression(self, account: str) -> str:
        """Set of E.164 numbers one account's campaigns never send to (its replies' STOPs), besides
        :meth:`suppression`, which every account's campaigns respect. The ``default`` account's is
        :meth:`suppression` itself: an install of one account keeps its one list, as before accounts."""
        return self.suppression() if account == "default" else f"{self.prefix}:suppressed:a:{account}"

    def suppression_version(self) -> str:
        """Counter of additions to the suppression list (a campaign remembers the one its preflight saw)."""
        return f"{self.prefix}:suppressed:v"

    def hlr(self, e164: str) -> str:
        """Cached HLR answer for one number (JSON string, with a TTL)."""
        return f"{self.prefix}:hlr:{e164}"

    def price_cache(self, kind: str, account: str = "default") -> str:
        """Cached price profile (``sms`` or ``lookup``) of an account (each project has its own),
        JSON string with a TTL; the ``default`` account's keeps the name it had before accounts."""
        return f"{self.prefix}:prices:{kind}" if account == "default" else f"{self.prefix}:prices:{kind}:a:{account}"

    # -- campaigns ----------------------------------------------------------------------------
    def campaigns(self) -> str:
        """Sorted set of campaign ids scored by creation time (Unix seconds)."""
        return f"{self.prefix}:campaigns"

    def campaign(self, campaign_id: str) -> str:
        """Hash: the campaign's settings, state, counters and timestamps."""
        return f"{self.prefix}:c:{campaign_id}"

    def batch(self, campaign_id: str, n: int) -> str:
        """Hash: one batch's state, attempts and lease (fields: see ``sending.batches``); only short
        fields, so Redis keeps it in its compact (listpack) encoding."""
        return f"{self.prefix}:c:{campaign_id}:b:{n}"

    def payload(self, campaign_id: str, n: int) -> str:
        """String: batch ``n``'s compressed messages (``sending.payload``), apart from its hash
        because one value over 64 bytes would move the whole hash to a hashtable (several times
        larger)."""
        return f"{self.prefix}:c:{campaign_id}:p:{n}"

    def ledger(self, campaign_id: str, n: int) -> str:
        """Hash: the per-message records of batch ``n`` (field = index in the batch)."""
        return f"{self.prefix}:c:{campaign_id}:m:{n}"

    def delivery(self, campaign_id: str, n: int) -> str:
        """Hash: delivery reports of batch ``n`` (field = index, value
        ``status|eventAt|code|micros|rank``; see :mod:`dispatcher.delivery.reports`)."""
        return f"{self.prefix}:c:{campaign_id}:d:{n}"

    def inbound(self, campaign_id: str) -> str:
        """List of JSON inbound messages (replies) received for a campaign."""
        return f"{self.prefix}:c:{campaign_id}:inbound"

    def inbound_unmatched(self) -> str:
        """List of JSON inbound messages that name no campaign of ours."""
        return f"{self.prefix}:inbound"

    def dlr_held(self) -> str:
        """Hash: delivery reports that could not be matched yet (``clientId|status|eventAt|id`` -> JSON)."""
        return f"{self.prefix}:dlr:held"

    def dlr_held_at(self) -> str:
        """Sorted set: the fields of :meth:`dlr_held`, scored by when each was first held (Unix s)."""
        return f"{self.prefix}:dlr:held:at"

    def dlr_held_retrying(self) -> str:
        """Lock of the receiver process running this round of held-report retries (value: its pid)."""
        return f"{self.prefix}:dlr:held:retrying"

    def rejects(self, campaign_id: str) -> str:
        """List of JSON rejects found by the preflight of a submitted campaign."""
        return f"{self.prefix}:c:{campaign_id}:rejects"

    def client_ids(self, campaign_id: str) -> str:
        """Hash: ``clientId`` -> ``batch:index``, to match delivery reports to messages."""
        return f"{self.prefix}:c:{campaign_id}:ids"

    def loader(self, campaign_id: str) -> str:
        """String: the lease of the process loading the campaign's list (token, expiring)."""
        return f"{self.prefix}:c:{campaign_id}:loader"

    def parked_in(self, campaign_id: str) -> str:
        """Sorted set of this campaign's batches waiting for a send window (score: release time)."""
        return f"{self.prefix}:c:{campaign_id}:parked"

    def parked(self) -> str:
        """Sorted set of every campaign's parked batches, ``{campaign_id}:{n}`` scored by release time (Unix s)."""
        return f"{self.prefix}:parked"

    # -- healing -----------------------------------------------------------------------------
    def epoch(self) -> str:
        """String set once per data set; its absence or change means Redis lost its data."""
        return f"{self.prefix}:epoch"

    def losses(self) -> str:
        """List of JSON records of each time Redis was found to have lost its data, newest first."""
        return f"{self.prefix}:losses"

    def health_probe(self) -> str:
        """String ``dispatcher health`` writes (with a short TTL) to prove Redis takes writes."""
        return f"{self.prefix}:health"

    def replication_barrier(self) -> str:
        """String a receiver writes (with a short TTL) to ``WAIT`` on: the replicas that have it have
        every write this process made before it (one replication stream, in order)."""
        return f"{self.prefix}:replicated"

    def watchdog_lock(self) -> str:
        """Lock held by the one worker running a watchdog sweep (value: a random token)."""
        return f"{self.prefix}:watchdog:lock"

    def watchdog_last(self) -> str:
        """JSON record of the last watchdog sweep."""
        return f"{self.prefix}:watchdog:last"

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

    def schedule_held(self, name: str) -> str:
        """List of campaign ids created by ``--overlap queue`` firings and waiting their turn, oldest first."""
        return f"{self.prefix}:sched:{name}:held"

    def schedule_fired(self, name: str, due: int) -> str:
        """Marker making one due time of a schedule fire at most once."""
        return f"{self.prefix}:sched:{name}:fired:{due}"

    def redbeat_prefix(self) -> str:
        """Prefix of celery-redbeat's own keys."""
        return f"{self.prefix}:redbeat"

    # -- rate limiting ------------------------------------------------------------------------
    @staticmethod
    def lane(organization: str, endpoint: str) -> str:
        """The name of the rate-limit lane of ``endpoint`` for ``organization`` (Instasent limits
        each organization and endpoint apart): ``acme:POST /sms/bulk``; with no organization known
        (the ``default`` account), the endpoint alone, as before accounts existed."""
        return f"{organization}:{endpoint}" if organization else endpoint

    def rate(self, lane: str) -> str:
        """GCRA state (theoretical arrival time, µs) of one rate-limit lane."""
        return f"{self.prefix}:rl:{lane}"

    def rate_messages(self, lane: str) -> str:
        """GCRA state (theoretical arrival time, µs) of one lane's message-per-second cap."""
        return f"{self.prefix}:rl:{lane}:msgs"

    def lane_pause(self, lane: str) -> str:
        """Unix µs until which a lane is paused after a 429 or an exhausted window."""
        return f"{self.prefix}:rl:{lane}:pause"

    # -- accounts -----------------------------------------------------------------------------
    def accounts(self) -> str:
        """Hash: account name -> JSON ``{organization, base_url, token, created_at}``, ``token``
        encrypted (Fernet, see ``sending.accounts``); never the token in clear."""
        return f"{self.prefix}:accounts"

    # -- console ------------------------------------------------------------------------------
    def console_tokens(self) -> str:
        """Hash: API token name -> JSON ``{hash, role, created_at}`` (the token itself is never stored)."""
        return f"{self.prefix}:console:tokens"

    def console_token_hashes(self) -> str:
        """Hash: SHA-256 of an API token -> its name, to authenticate a request in one lookup."""
        return f"{self.prefix}:console:token-hashes"

    def console_session(self, session_id_hash: str) -> str:
        """JSON of one dashboard session (token name, token hash, CSRF token), with a TTL."""
        return f"{self.prefix}:console:session:{session_id_hash}"

    def campaign_series(self, campaign_id: str) -> str:
        """List of JSON samples ``[t, sent, failed, delivered, undelivered]`` the console takes of a campaign."""
        return f"{self.prefix}:c:{campaign_id}:series"

    def series_tick(self, second: int) -> str:
        """Marker letting one console process take the samples of one second."""
        return f"{self.prefix}:console:tick:{second}"

    # -- fair share ---------------------------------------------------------------------------
    def fair_lane(self, organization: str) -> str:
        """Hash of the campaigns sharing one organization's bulk lane: campaign id -> weight
        (``sending.fairshare``); ``""`` is the default lane."""
        return f"{self.prefix}:fair:{organization}"

    def bulk_share(self, bucket: int) -> str:
        """Hash of bulk requests per campaign in one 10 s bucket (Unix s // 10), expiring after a
        few minutes: the share each campaign took of its lane lately (``sending.fairshare``)."""
        return f"{self.prefix}:share:{bucket}"

    # -- telemetry ----------------------------------------------------------------------------
    def telemetry(self) -> str:
        """Hash of counters the workers add to (bulk requests by status, limiter waits, batch durations)."""
        return f"{self.prefix}:telemetry"

    def balances(self) -> str:
        """Hash of the Instasent balance each organization's preflight last read (for ``/metrics`` only)."""
        return f"{self.prefix}:balances"

    # -- workers ------------------------------------------------------------------------------
    def workers(self) -> str:
        """Sorted set of live workers, scored by when their heartbeat runs out (Redis time, Unix s)."""
        return f"{self.prefix}:workers"

    def worker_limits(self) -> str:
        """Hash of the rate limits the workers run with (``per_min``, ``messages_per_s``, ``at``), written
        with each heartbeat and expiring with it, so readers show the workers' limit, not their own."""
        return f"{self.prefix}:workers:limits"

    def kept_columns(self, campaign_id: str) -> str:
        """Hash of the list's own columns kept for the report: row number -> JSON list of cells."""
        return f"{self.prefix}:campaign:{campaign_id}:kept"

    # -- campaign events ----------------------------------------------------------------------
    def campaign_events(self, campaign_id: str) -> str:
        """List of a campaign's timeline events (JSON: ``at``, ``kind``, ``by``, ``reason``), oldest first."""
        return f"{self.prefix}:campaign:{campaign_id}:events"

    def queue(self) -> str:
        """The Celery queue of this install: prefixed too, so two installs on one broker stay apart."""
        return f"{self.prefix}:tasks"
