"""One typed settings object, built from the environment and an optional ``.env`` file.

Every process (CLI, workers, beat, webhook) builds its ``Settings`` the same way, so a submit and
the workers agree on rate limits and key prefixes. Real environment variables win over ``.env``.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from dispatcher.errors import ConfigurationError
from dispatcher.keys import Keys

#: Instasent's Transactional API base URL.
DEFAULT_BASE_URL = "https://api.instasent.com/transactional/v1"
#: Seconds of the request rate a campaign keeps queued by default (see ``Settings.effective_queue_window``).
AUTO_WINDOW_S = 1.5
#: Seconds a lease must outlast the POST deadline (to renew, record and absorb clock jitter).
LEASE_MARGIN_S = 0.5
#: An IPv4 or IPv6 network.
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Redis used when ``REDIS_URL`` is not set.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class Secret:
    """A string that never shows itself in a repr, a log line or an f-string."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value; call only where it goes on the wire."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        # Secrets must not travel in task arguments or pickles by accident.
        raise TypeError("Secret values cannot be pickled")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a `dispatcher` process needs to know, with units in the names.

    Build it with :meth:`from_env`; tests build it directly or with :meth:`with_overrides`.
    """

    instasent_token: Secret = field(default_factory=lambda: Secret(""))
    instasent_base_url: str = DEFAULT_BASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    #: Celery broker; defaults to ``redis_url``. May point at RabbitMQ (``amqp://``).
    broker_url: str = ""
    #: Prefix of every Redis key this project writes.
    key_prefix: str = "dsp"
    #: Celery queue of the batch tasks; empty means ``{key_prefix}:tasks`` (see :attr:`task_queue`).
    queue_name: str = ""
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    write_timeout_s: float = 10.0
    #: Requests per minute per Instasent endpoint, shared by every worker.
    rate_limit_per_min: int = 6000
    #: Messages per second across all workers; 0 means no message limit.
    message_rate_per_s: float = 0.0
    #: Batches a campaign keeps queued in the broker at once; 0 derives it from the rate limit
    #: (see ``effective_queue_window``).
    queue_window: int = 0
    #: Attempts per batch before its messages are marked ``failed``.
    max_attempts: int = 8
    #: Consecutive failed batches that pause a campaign.
    max_consecutive_failures: int = 5
    #: First retry delay in seconds; doubles per failed attempt (with jitter) up to the maximum.
    retry_backoff_s: float = 1.0
    retry_backoff_max_s: float = 60.0
    #: Seconds to wait after an unknown outcome before reconciling by clientId.
    reconcile_delay_s: float = 5.0
    #: Longest a worker waits in place for a rate-limit slot before rescheduling the batch.
    max_slot_wait_s: float = 10.0
    #: Seconds a claimed batch is held before another worker may take it over; 0 derives it from
    #: the timeouts (it must outlast a slot wait plus two full requests).
    batch_lease_s: float = 0.0
    #: Longest a POST to Instasent may take, connection to last byte; 0 derives it from the timeouts.
    #: It must end well inside the lease, which is renewed right before each POST.
    post_deadline_s: float = 0.0
    #: Seconds between two watchdog sweeps in each worker (one sweep at a time runs, under a lock).
    watchdog_every_s: float = 15.0
    #: Let workers, ``submit`` and ``webhook`` run on a Redis that does not persist (demo, tests).
    allow_volatile_redis: bool = False
    #: Seconds a ``submit``'s loader lease lasts without a refresh (refreshed every third of it): how
    #: long after a ``submit`` dies its campaign shows as interrupted.
    load_lease_s: float = 15.0
    #: Seconds a lookup result stays cached.
    hlr_cache_ttl_s: int = 30 * 24 * 3600
    #: Lookups in flight at once during the HLR pre-check.
    hlr_concurrency: int = 32
    #: Seconds campaign data is kept in Redis after the campaign ends.
    campaign_ttl_s: int = 30 * 24 * 3600
    #: Secret path segment of the DLR webhook (``/dlr/{secret}``).
    webhook_secret: Secret = field(default_factory=lambda: Secret(""))
    #: Seconds between the receiver's retries of held reports (an unknown campaign, or a message with
    #: no send record yet); 0 turns them off.
    held_retry_s: float = 30.0
    #: Addresses or networks (CIDRs, comma-separated) the receiver takes reports from; empty: any.
    #: It applies to the client address the server resolved: behind a proxy, the one the proxy put
    #: in X-Forwarded-For, when the proxy is trusted (``--forwarded-allow-ips``). See
    #: :attr:`webhook_allow_networks`.
    webhook_allow: str = ""
    flower_user: str = ""
    flower_password: Secret = field(default_factory=lambda: Secret(""))
    #: Largest recipient file the console accepts, in MB (10**6 bytes); bigger uploads get 413.
    max_upload_mb: float = 200.0
    #: Directory where the console keeps files uploaded for schedules (the workers must read it too).
    console_data_dir: str = "console-data"
    # --- What one console request may make the server hold or produce (issue 21). ---
    #: Most data rows in one uploaded recipient file (counted after decompression); more get 413.
    max_upload_rows: int = 5_000_000
    #: Most bytes an uploaded file may expand to once decompressed (.gz, .xlsx), in MB (10**6
    #: bytes); a bigger expansion (a decompression bomb) gets 413.
    max_upload_expanded_mb: float = 1000.0
    #: Most times an uploaded file may expand when decompressed, once past 1 MB: a list of phone
    #: numbers gzips 4 to 8 times, a decompression bomb (a 20 KB gzip of a million repeated bad
    #: rows) hundreds of times; a bigger expansion gets 413.
    max_upload_ratio: float = 100.0
    #: Most rejected rows listed in one preflight answer (their count is always given in full);
    #: ``GET /api/campaigns/{cid}/rejects`` pages through all of them.
    max_answer_rejects: int = 1000
    # The HTTP servers of the console and the webhook (dispatcher.serving), per server process:
    #: Seconds a client has to send a request's line and headers, from the connection's opening or
    #: the end of the previous answer; a slower connection is closed.
    server_header_timeout_s: float = 10.0
    #: Seconds a request body may stall: while the app waits for it, each next KiB (or its end) must
    #: arrive within this many seconds of waiting, else the connection is cut (a drip is cut too).
    server_body_timeout_s: float = 10.0
    #: Seconds an idle connection is kept open after an answer, waiting for the next request.
    server_keep_alive_s: int = 5
    #: Open connections at most; past it the oldest one waiting for a request is closed, or, when all
    #: are busy, the new one is answered 503.
    server_max_connections: int = 1000
    #: Reverse proxies (IPs or CIDRs, comma-separated; ``*`` for any) whose X-Forwarded-For and
    #: X-Forwarded-Proto are believed; empty (the default) believes none, not even 127.0.0.1.
    forwarded_allow_ips: str = ""
    # -- Redis with replicas (issue 23; see docs/failover.md) --------------------------------------
    #: Replicas that must acknowledge (``WAIT``) a batch's claim and lease before its POST goes out;
    #: 0 sends without waiting. With fewer acknowledgements in time the batch does not POST and is
    #: retried. With a Sentinel URL and at least 1, a master with that many replicas counts as durable.
    #: The webhook receiver answers a delivery report 2xx only once that many replicas have it (503 else).
    redis_min_replicas: int = 0
    #: Seconds to wait for those acknowledgements before a POST (taken from the lease), or before
    #: the receiver answers a report.
    redis_replica_wait_s: float = 0.5
    #: CA bundle (PEM file) that verifies the server of a ``rediss://`` or ``rediss+sentinel://`` URL;
    #: empty uses the system's CAs.
    redis_ca_file: str = ""

    # --- Accounts (issue 24). ---
    #: Passphrase (at least 32 characters) the tokens of ``dispatcher account`` are encrypted with at
    #: rest; the Fernet key is derived from it with HKDF (see ``dispatcher.sending.accounts``). Changing
    #: it makes the stored tokens unreadable: add the accounts again.
    secret_key: Secret = field(default_factory=lambda: Secret(""))
    #: True: a reply's STOP suppresses the number for every account (the global list); False (the
    #: default): only for the account whose campaign it answers.
    global_optout: bool = False

    def __repr__(self) -> str:
        # The URLs may carry a Redis or broker password; the secrets show themselves as stars already.
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            shown.append(f"{f.name}={redact_url(value) if f.name in _URLS else value!r}")
        return f"Settings({', '.join(shown)})"

    @property
    def lease_s(self) -> float:
        """Seconds a worker holds a claimed batch (see ``batch_lease_s``)."""
        if self.batch_lease_s:
            return self.batch_lease_s
        request = self.connect_timeout_s + self.write_timeout_s + self.read_timeout_s
        return self.max_slot_wait_s + 2 * request + 5.0

    @property
    def webhook_allow_networks(self) -> tuple[IPNetwork, ...]:
        """:attr:`webhook_allow` parsed (a bare address is a network of one); empty: any address.

        Raises:
            ConfigurationError: when an entry is neither an address nor a network.
        """
        networks = []
        for entry in (e.strip() for e in self.webhook_allow.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ConfigurationError(f"DISPATCHER_WEBHOOK_ALLOW: {entry!r} is not an IP address or a network "
                                         "such as 203.0.113.0/24 or 2001:db8::/32.") from None
        return tuple(networks)

    @property
    def effective_queue_window(self) -> int:
        """Batches a campaign keeps queued: ``queue_window``, or by default ``AUTO_WINDOW_S`` seconds
        of the bulk request rate (at least 16, at most 512), so the batches in flight can cover a
        round trip of up to about a second without the window holding the pace back."""
        if self.queue_window:
            return self.queue_window
        rate = self.rate_limit_per_min / 60
        if self.message_rate_per_s:
            rate = min(rate, self.message_rate_per_s / 100)  # 100 messages per bulk request
        return max(16, min(512, math.ceil(rate * AUTO_WINDOW_S)))

    @property
    def post_deadline(self) -> float:
        """Seconds a POST may take in all (see ``post_deadline_s``)."""
        if self.post_deadline_s:
            return self.post_deadline_s
        return self.connect_timeout_s + self.write_timeout_s + self.read_timeout_s

    def check_lease(self) -> None:
        """Refuse settings in which a POST could outlive the lease that fences it.

        Raises:
            ConfigurationError: when the lease is not longer than the POST deadline plus a margin.
        """
        margin = LEASE_MARGIN_S + self.replica_wait
        if self.lease_s < self.post_deadline + margin:
            raise ConfigurationError(
                f"DISPATCHER_BATCH_LEASE ({self.lease_s:g} s) must exceed the POST deadline ({self.post_deadline:g} s, "
                f"DISPATCHER_POST_DEADLINE or the sum of the three timeouts) by at least {margin:g} s; "
                "raise the lease or lower the deadline.")

    @property
    def replica_wait(self) -> float:
        """Seconds a POST may wait for replicas to acknowledge its claim: 0 when none must."""
        return self.redis_replica_wait_s if self.redis_min_replicas else 0.0

    @property
    def task_queue(self) -> str:
        """The Celery queue: ``queue_name`` when set, else named after the key prefix, so that two
        installs sharing a broker (with different prefixes) never take each other's tasks."""
        return self.queue_name or Keys(self.key_prefix).queue()

    @property
    def effective_broker_url(self) -> str:
        """The broker URL: ``broker_url`` when set, else ``redis_url``."""
        return self.broker_url or self.redis_url

    def require_token(self) -> str:
        """Return the Instasent token.

        Raises:
            ConfigurationError: when ``INSTASENT_TOKEN`` is not set.
        """
        if not self.instasent_token:
            raise ConfigurationError(
                "INSTASENT_TOKEN is not set: export it (or put it in .env) with your Instasent API token."
            )
        return self.instasent_token.reveal()

    def with_overrides(self, **changes: Any) -> Settings:
        """Return a copy with some fields replaced (strings are wrapped as secrets where needed)."""
        for name in _SECRETS:
            if isinstance(changes.get(name), str):
                changes[name] = Secret(changes[name])
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env") -> Settings:
        """Build settings from ``environ`` (default ``os.environ``) over an optional ``.env`` file.

        Raises:
            ConfigurationError: when a variable holds a value of the wrong type or range.
        """
        values: dict[str, str] = {}
        if env_file is not None:
            values.update(read_env_file(Path(env_file)))
        values.update(os.environ if environ is None else environ)
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            var = _ENV_NAMES.get(f.name, f.name.upper())
            raw = values.get(var)
            if raw is None or raw == "":
                continue
            kwargs[f.name] = _convert(var, raw, f.default if not isinstance(f.default, type) else None, f.name)
        return cls(**kwargs)


_ENV_NAMES = {
    "instasent_token": "INSTASENT_TOKEN",
    "instasent_base_url": "INSTASENT_BASE_URL",
    "redis_url": "REDIS_URL",
    "broker_url": "CELERY_BROKER_URL",
    "key_prefix": "DISPATCHER_KEY_PREFIX",
    "queue_name": "DISPATCHER_QUEUE",
    "connect_timeout_s": "DISPATCHER_CONNECT_TIMEOUT",
    "read_timeout_s": "DISPATCHER_READ_TIMEOUT",
    "write_timeout_s": "DISPATCHER_WRITE_TIMEOUT",
    "rate_limit_per_min": "DISPATCHER_RATE_LIMIT",
    "message_rate_per_s": "DISPATCHER_MESSAGE_RATE",
    "queue_window": "DISPATCHER_QUEUE_WINDOW",
    "max_attempts": "DISPATCHER_MAX_ATTEMPTS",
    "max_consecutive_failures": "DISPATCHER_MAX_CONSECUTIVE_FAILURES",
    "retry_backoff_s": "DISPATCHER_RETRY_BACKOFF",
    "retry_backoff_max_s": "DISPATCHER_RETRY_BACKOFF_MAX",
    "reconcile_delay_s": "DISPATCHER_RECONCILE_DELAY",
    "max_slot_wait_s": "DISPATCHER_MAX_SLOT_WAIT",
    "batch_lease_s": "DISPATCHER_BATCH_LEASE",
    "post_deadline_s": "DISPATCHER_POST_DEADLINE",
    "watchdog_every_s": "DISPATCHER_WATCHDOG_EVERY",
    "allow_volatile_redis": "DISPATCHER_ALLOW_VOLATILE_REDIS",
    "load_lease_s": "DISPATCHER_LOAD_LEASE",
    "hlr_cache_ttl_s": "DISPATCHER_HLR_CACHE_TTL",
    "hlr_concurrency": "DISPATCHER_HLR_CONCURRENCY",
    "campaign_ttl_s": "DISPATCHER_CAMPAIGN_TTL",
    "webhook_secret": "DISPATCHER_WEBHOOK_SECRET",
    "held_retry_s": "DISPATCHER_HELD_RETRY",
    "webhook_allow": "DISPATCHER_WEBHOOK_ALLOW",
    "flower_user": "FLOWER_USER",
    "flower_password": "FLOWER_PASSWORD",
    "max_upload_mb": "DISPATCHER_MAX_UPLOAD_MB",
    "console_data_dir": "DISPATCHER_CONSOLE_DATA_DIR",
    "max_upload_rows": "DISPATCHER_MAX_UPLOAD_ROWS",
    "max_upload_expanded_mb": "DISPATCHER_MAX_UPLOAD_EXPANDED_MB",
    "max_upload_ratio": "DISPATCHER_MAX_UPLOAD_RATIO",
    "max_answer_rejects": "DISPATCHER_MAX_ANSWER_REJECTS",
    "server_header_timeout_s": "DISPATCHER_SERVER_HEADER_TIMEOUT",
    "server_body_timeout_s": "DISPATCHER_SERVER_BODY_TIMEOUT",
    "server_keep_alive_s": "DISPATCHER_SERVER_KEEP_ALIVE",
    "server_max_connections": "DISPATCHER_SERVER_MAX_CONNECTIONS",
    "forwarded_allow_ips": "DISPATCHER_FORWARDED_ALLOW_IPS",
    "redis_min_replicas": "DISPATCHER_REDIS_MIN_REPLICAS",
    "redis_replica_wait_s": "DISPATCHER_REDIS_REPLICA_WAIT",
    "redis_ca_file": "DISPATCHER_REDIS_CA_FILE",
    "secret_key": "DISPATCHER_SECRET_KEY",
    "global_optout": "DISPATCHER_GLOBAL_OPTOUT",
}

#: Every environment variable the code reads, for docs and the compose-file test.
ENV_VARS = tuple(_ENV_NAMES.values())

#: Settings holding URLs that may carry a password (shown redacted).
_URLS = {"redis_url", "broker_url"}
_SECRETS = {"instasent_token", "webhook_secret", "flower_password", "secret_key"}
_POSITIVE = {"connect_timeout_s", "read_timeout_s", "write_timeout_s", "rate_limit_per_min", "queue_window",
             "max_attempts", "max_consecutive_failures", "hlr_concurrency", "max_upload_mb",
             "watchdog_every_s", "load_lease_s", "max_upload_rows", "max_upload_expanded_mb",
             "max_upload_ratio", "redis_replica_wait_s",
             "server_header_timeout_s", "server_body_timeout_s", "server_keep_alive_s", "server_max_connections"}


def _convert(var: str, raw: str, default: Any, name: str) -> Any:
    if name in _SECRETS:
        return Secret(raw.strip())
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int | float):
        kind = type(default)
        try:
            value = kind(raw.strip())
        except ValueError:
            noun = "a whole number" if kind is int else "a number"
            raise ConfigurationError(f"{var} must be {noun}, got {raw!r}.") from None
        if not math.isfinite(value):
            raise ConfigurationError(f"{var} must be a finite number, got {raw!r}.")
        if value < 0 or (name in _POSITIVE and value == 0):
            raise ConfigurationError(f"{var} must be greater than zero, got {raw!r}.")
        return value
    return raw.strip()


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by stars: ``redis://:****@host:6379/0``."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1****@", url)


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a ``.env`` file of ``KEY=value`` lines; a missing file gives an empty mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        return {}
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if value[:1] in ("'", '"') and value.find(value[0], 1) > 0:
            value = value[1:value.find(value[0], 1)]  # a quoted value: anything after it is a comment
        else:
            value = re.split(r"\s#", value, maxsplit=1)[0].rstrip()  # ``KEY=value  # comment``
        values[key.strip()] = value
    return values
