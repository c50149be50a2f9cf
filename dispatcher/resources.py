"""The long-lived things a process builds from its :class:`~dispatcher.settings.Settings`, in one place.

The CLI, the Celery workers, beat and the webhook receiver all get their Redis client, their
:class:`~dispatcher.keys.Keys` and the stores built on them from :class:`Resources`, so every
process uses the same timeouts and the same key prefix. Only the Celery enqueuer is not here: it
lives in ``tasks.enqueue``, because this package never imports Celery.

This is the one composition root: it may import every library floor (instasent, preflight,
sending, delivery), and only the fronts import it (``tests/test_layering.py``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

from dispatcher.delivery.reports import DeliveryBook
from dispatcher.errors import ConfigurationError
from dispatcher.instasent.client import InstasentClient
from dispatcher.keys import Keys
from dispatcher.preflight.suppression import SuppressionList
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.context import SendContext
from dispatcher.sending.ratelimit import RateLimiter
from dispatcher.sending.readiness import PROBE_CONNECT_TIMEOUT_S, PROBE_REPLY_TIMEOUT_S, ReadinessProbe
from dispatcher.sending.schedules.store import ScheduleStore
from dispatcher.sending.store import CampaignStore
from dispatcher.settings import Settings, redact_url

#: Seconds to wait for a TCP connection to Redis. A CLI user learns quickly that Redis is away; a
#: worker's task is retried.
REDIS_CONNECT_TIMEOUT_S = 5.0
#: Seconds to wait for any one Redis reply. Our Lua calls take milliseconds; a minute-long reply
#: means a stuck server, and the caller's error path (a task retry, an error sentence) is better.
REDIS_SOCKET_TIMEOUT_S = 30.0


#: URL schemes of a Redis reached directly, and of one found through Sentinel.
DIRECT_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
#: Port of a sentinel named without one.
SENTINEL_PORT = 26379


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is, parsed once from ``REDIS_URL`` (or ``CELERY_BROKER_URL``), and what each
    library is given to reach it: redis-py, kombu (the broker) and celery-redbeat.

    A direct URL (``redis://``, ``rediss://``, ``unix://``) is kept as is. A Sentinel URL follows
    the redis-sentinel-url convention:
    ``redis+sentinel://[[user]:password@]host:port[,host:port…]/service_name[/db]``, and
    ``rediss+sentinel://`` for TLS to the sentinels and the master alike. The password is the
    master's (and its replicas'); the sentinels are asked without one. It never shows in a repr.
    """

    url: str = field(repr=False)
    #: ``(host, port)`` of each sentinel; empty for a direct URL.
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    tls: bool = False
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    #: CA bundle that verifies a TLS server; empty for the system's.
    ca_file: str = ""

    @property
    def sentinel(self) -> bool:
        """True when the master is found through Sentinel."""
        return bool(self.sentinels)

    def describe(self) -> str:
        """The URL without its password, for messages."""
        return redact_url(self.url)

    def _tls_options(self) -> dict[str, Any]:
        if not self.tls:
            return {}
        return {"ssl": True, **({"ssl_ca_certs": self.ca_file} if self.ca_file else {})}

    def _auth(self) -> dict[str, Any]:
        return {k: v for k, v in (("username", self.username), ("password", self.password)) if v}

    def client(self, *, connect_timeout_s: float, timeout_s: float, single_connection: bool = False) -> redis.Redis:
        """A pooled blocking client (a Sentinel-managed one follows the master through failovers;
        ``single_connection`` is then ignored, see below)."""
        timeouts: dict[str, Any] = {"socket_connect_timeout": connect_timeout_s, "socket_timeout": timeout_s}
        if not self.sentinel:
            tls: dict[str, Any] = {"ssl_ca_certs": self.ca_file} if self.tls and self.ca_file else {}
            return redis.Redis.from_url(self.url, single_connection_client=single_connection, **timeouts, **tls)
        manager = redis.sentinel.Sentinel(list(self.sentinels), sentinel_kwargs={**timeouts, **self._tls_options()},
                                          **timeouts)
        # Always pooled: redis-py asks Sentinel for the master's address when the pool hands out a
        # connection, but a single-connection client reconnects its one connection to the address
        # it had, the dead master's, for ever (redis-py 8.2).
        return manager.master_for(self.service, db=self.db, **self._auth(), **self._tls_options())

    def async_client(self, *, connect_timeout_s: float, timeout_s: float) -> redis.asyncio.Redis:
        """The asyncio twin of :meth:`client` (for the webhook receiver)."""
        timeouts: dict[str, Any] = {"socket_connect_timeout": connect_timeout_s, "socket_timeout": timeout_s}
        if not self.sentinel:
            tls: dict[str, Any] = {"ssl_ca_certs": self.ca_file} if self.tls and self.ca_file else {}
            return redis.asyncio.Redis.from_url(self.url, **timeouts, **tls)
        manager = redis.asyncio.sentinel.Sentinel(list(self.sentinels),
                                                  sentinel_kwargs={**timeouts, **self._tls_options()}, **timeouts)
        return manager.master_for(self.service, db=self.db, **self._auth(), **self._tls_options())

    def broker(self) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
        """Celery's ``broker_url``, the ``broker_transport_options`` to add and ``broker_use_ssl``.

        For Sentinel: kombu's ``sentinel://`` URL (one per sentinel, ``;``-separated) with the
        master's password, and the ``master_name`` option.
        """
        tls: dict[str, Any] | None = None
        if self.tls:
            tls = {"ssl_cert_reqs": "required", **({"ssl_ca_certs": self.ca_file} if self.ca_file else {})}
        if not self.sentinel:
            return self.url, {}, tls
        auth = ""
        if self.password or self.username:
            auth = f"{quote(self.username, safe='')}:{quote(self.password, safe='')}@"
        url = ";".join(f"sentinel://{auth}{_netloc(host, port)}/{self.db}" for host, port in self.sentinels)
        options: dict[str, Any] = {"master_name": self.service}
        if self.tls:
            options["sentinel_kwargs"] = self._tls_options()
        return url, options, tls

    def redbeat(self) -> dict[str, Any]:
        """celery-redbeat's ``redbeat_redis_url``, ``redbeat_redis_options`` (and ``redbeat_redis_use_ssl``).

        The URL carries no password: Celery masks a ``password`` key in ``inspect conf`` and
        Flower's config tab, but shows any other setting, redbeat's URL included, as is.
        """
        options: dict[str, Any] = self._auth()
        if not self.sentinel:
            parts = urlsplit(self.url)
            host = parts.hostname or ""
            netloc = (_netloc(host, parts.port) if parts.port else (f"[{host}]" if ":" in host else host))
            bare = parts._replace(netloc=netloc).geturl()
            out: dict[str, Any] = {"redbeat_redis_url": bare, "redbeat_redis_options": options}
            if self.tls and self.ca_file:
                out["redbeat_redis_use_ssl"] = {"ssl_ca_certs": self.ca_file}
            return out
        options.update(sentinels=list(self.sentinels), service_name=self.service, db=self.db,
                       socket_timeout=REDIS_SOCKET_TIMEOUT_S)
        if self.tls:
            options["sentinel_kwargs"] = self._tls_options()
        out = {"redbeat_redis_url": f"redis-sentinel://{_netloc(*self.sentinels[0])}/{self.db}",
               "redbeat_redis_options": options}
        if self.tls:
            out["redbeat_redis_use_ssl"] = {k: v for k, v in self._tls_options().items() if k != "ssl"}
        return out


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_redis_url(url: str, *, ca_file: str = "", name: str = "REDIS_URL") -> RedisTarget:
    """Parse a Redis URL, direct or Sentinel (see :class:`RedisTarget`).

    Raises:
        ConfigurationError: one sentence naming ``name`` when the URL is not one of these forms
            (the password is never repeated).
    """
    shown = redact_url(url)
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DIRECT_SCHEMES + SENTINEL_SCHEMES:
        raise ConfigurationError(
            f"{name} ({shown}) must start with redis://, rediss://, unix://, redis+sentinel:// or rediss+sentinel://.")
    if scheme in DIRECT_SCHEMES:
        try:
            redis.connection.parse_url(url)
        except ValueError as exc:
            raise ConfigurationError(f"{name} ({shown}) is not a valid Redis URL: {_sentence(exc, url)}.") from None
        parts = urlsplit(url)
        return RedisTarget(url=url, tls=scheme == "rediss", ca_file=ca_file,
                           username=unquote(parts.username or ""), password=unquote(parts.password or ""))
    parts = urlsplit(url)
    auth, _, hosts = parts.netloc.rpartition("@")
    username, _, password = auth.partition(":") if auth else ("", "", "")
    sentinels = []
    for item in hosts.split(","):
        host, port = _host_port(item.strip(), name, shown)
        sentinels.append((host, port))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ConfigurationError(
            f"{name} ({shown}) must name the Sentinel service after the hosts: "
            "redis+sentinel://host:26379[,host:26379…]/service_name[/db].")
    db = 0
    if len(path) == 2:
        if not path[1].isdigit():
            raise ConfigurationError(f"{name} ({shown}) must end with a database number, got {path[1]!r}.")
        db = int(path[1])
    return RedisTarget(url=url, sentinels=tuple(sentinels), service=unquote(path[0]), db=db,
                       tls=scheme == "rediss+sentinel", username=unquote(username), password=unquote(password),
                       ca_file=ca_file)


def _host_port(item: str, name: str, shown: str) -> tuple[str, int]:
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ConfigurationError(f"{name} ({shown}) names a sentinel without a host.")
    if not port_text:
        return host, SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigurationError(f"{name} ({shown}) has a sentinel port that is not a number from 1 to 65535: "
                                 f"{port_text!r}.")
    return host, int(port_text)


def _sentence(exc: ValueError, url: str) -> str:
    # redis-py's messages may quote the URL, password included.
    text = str(exc).replace(url, redact_url(url)).rstrip(".")
    return text[:1].lower() + text[1:]


def connect_redis(url: str, *, connect_timeout_s: float = REDIS_CONNECT_TIMEOUT_S,
                  timeout_s: float = REDIS_SOCKET_TIMEOUT_S, single_connection: bool = False,
                  ca_file: str = "") -> redis.Redis:
    """A pooled Redis client for ``url`` (direct or Sentinel, see :class:`RedisTarget`); it
    connects on its first command, not here.

    ``single_connection`` keeps one connection for the client's commands instead of taking one
    from the pool per command (pipelines still use the pool): for a client used by one thread.

    Raises:
        ConfigurationError: when ``url`` is not a Redis URL (one sentence).
    """
    return parse_redis_url(url, ca_file=ca_file).client(connect_timeout_s=connect_timeout_s, timeout_s=timeout_s,
                                                        single_connection=single_connection)


def readiness_probe(settings: Settings) -> ReadinessProbe:
    """The ``GET /readyz`` checks of a server, on a Redis client of their own whose timeouts are
    seconds, not the 30 s of the others: a probe of a Redis that hangs answers "not ready" at once
    and the thread asking it is free soon after (nothing connects until the first probe).

    Raises:
        ConfigurationError: when ``REDIS_URL`` is not a Redis URL (one sentence).
    """
    client = parse_redis_url(settings.redis_url, ca_file=settings.redis_ca_file).client(
        connect_timeout_s=PROBE_CONNECT_TIMEOUT_S, timeout_s=PROBE_REPLY_TIMEOUT_S)
    return ReadinessProbe(client, Keys(settings.key_prefix), settings)


@dataclass(frozen=True)
class Resources:
    """One process's Redis client, key builder and the stores on them (each built on first use)."""

    settings: Settings
    redis: redis.Redis
    keys: Keys

    @classmethod
    def from_settings(cls, settings: Settings, single_connection: bool = False) -> Resources:
        """Build them for ``settings`` (nothing connects until the first Redis command).

        ``single_connection``: see :func:`connect_redis` (for resources one thread uses).
        """
        return cls(settings=settings, redis=connect_redis(settings.redis_url, single_connection=single_connection,
                                                          ca_file=settings.redis_ca_file),
                   keys=Keys(settings.key_prefix))

    @functools.cached_property
    def store(self) -> CampaignStore:
        """Campaigns: settings, state, counters."""
        return CampaignStore(self.redis, self.keys)

    @functools.cached_property
    def ops(self) -> BatchOps:
        """Batches: claims, records, the queue window."""
        return BatchOps(self.redis, self.keys)

    @functools.cached_property
    def limiter(self) -> RateLimiter:
        """The rate limiter every worker shares."""
        return RateLimiter(self.redis, self.keys)

    @functools.cached_property
    def schedules(self) -> ScheduleStore:
        """Recurring campaigns and their firings."""
        return ScheduleStore(self.redis, self.keys)

    @functools.cached_property
    def deliveries(self) -> DeliveryBook:
        """Delivery reports, applied to the campaigns' records."""
        return DeliveryBook(self.redis, self.keys)

    @functools.cached_property
    def suppression(self) -> SuppressionList:
        """Numbers that must never receive a message."""
        return SuppressionList(self.redis, self.keys)

    def instasent(self) -> InstasentClient:
        """A new Instasent client for these settings; the caller closes it.

        Raises:
            ConfigurationError: when no API token is configured.
        """
        return InstasentClient.from_settings(self.settings)

    def send_context(self) -> SendContext:
        """What a worker needs to send batches, with an Instasent client of its own."""
        return SendContext(settings=self.settings, client=self.instasent(), store=self.store, ops=self.ops,
                      limiter=self.limiter)
