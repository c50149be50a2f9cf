"""The campaign store in Redis: create a campaign, read it, move it between states, expire it.

Layout (all keys from :class:`dispatcher.keys.Keys`): a hash per campaign (settings, state,
counters ``n:<status>``, timestamps), a hash per batch (state and compressed messages, see
:mod:`dispatcher.sending.batches`) and a ledger hash per batch (one record per message, see
:mod:`dispatcher.sending.ledger`). TTL policy: nothing expires while a campaign can still send; when it
completes or is cancelled, every key of it expires ``campaign_ttl_s`` later.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pandas as pd
import redis

from dispatcher.errors import InvalidTransition, UnknownItem
from dispatcher.instasent.client import MAX_BULK_ITEMS
from dispatcher.keys import Keys
from dispatcher.schema.names import COUNTERS, DEFAULT_ACCOUNT, State
from dispatcher.schema.scripts import era, script
from dispatcher.sending import fairshare, payload
from dispatcher.sending.ledger import Record, decode
from dispatcher.sending.windows import Window

#: Batches written per script call when a campaign is created.
_WRITE_CHUNK = 500
#: Campaigns whose account one round trip reads when listing the campaigns of some accounts.
_SCAN_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class CampaignInfo:
    """A campaign as stored: state, sizes, message counts by status, timestamps (Unix seconds)."""

    id: str
    name: str
    state: State
    reason: str
    total: int
    batches: int
    enqueued: int
    settled: int
    counts: dict[str, int]
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float | None
    cost: float
    currency: str
    options: dict[str, Any] = field(default_factory=dict)
    preflight: dict[str, Any] = field(default_factory=dict)
    #: Delivery reports: ``delivered`` and ``undelivered`` (failed, expired, rejected...) messages.
    delivery: dict[str, int] = field(default_factory=dict)
    #: Messages whose batch waits for its send window to open.
    waiting: int = 0
    expires_at: float | None = None
    send_window: Window | None = None
    #: The watchdog's last re-drive of this campaign: ``at`` (Unix s) and ``batches``, or empty.
    watchdog: dict[str, float] = field(default_factory=dict)
    #: The schedule whose firing created the campaign, or empty.
    schedule: str = ""
    #: Its weight in its lane's fair share: ``low``, ``normal`` or ``high`` (see ``sending.fairshare``).
    priority: str = "normal"
    #: The account it sends for (campaigns stored before accounts existed: ``default``).
    account: str = DEFAULT_ACCOUNT
    #: That account's organization at submit time ("" when unknown); with the endpoint, its rate-limit lane.
    organization: str = ""

    @property
    def delivery_rate(self) -> float | None:
        """Delivered share of the messages with a final delivery report; None before any."""
        final = self.delivery.get("delivered", 0) + self.delivery.get("undelivered", 0)
        return self.delivery.get("delivered", 0) / final if final else None

    @property
    def delivery_rate_of_sent(self) -> float | None:
        """Delivered share of the messages Instasent accepted (``sent``); None before any."""
        sent = self.counts.get("sent", 0)
        return self.delivery.get("delivered", 0) / sent if sent else None

    @property
    def pending(self) -> int:
        """Messages with no record yet."""
        return self.counts.get("pending", 0)

    @property
    def processed(self) -> int:
        """Messages in a terminal state."""
        return self.total - self.pending - self.counts.get("unknown", 0)

    def to_json(self) -> dict[str, Any]:
        """The ``status --json`` shape."""
        return {
            "id": self.id, "name": self.name, "state": self.state, "reason": self.reason, "total": self.total,
            "batches": self.batches, "settled_batches": self.settled, "counts": self.counts,
            "created_at": self.created_at, "started_at": self.started_at, "finished_at": self.finished_at,
            "updated_at": self.updated_at, "cost": self.cost, "currency": self.currency,
            "delivered": self.delivery.get("delivered", 0), "undelivered": self.delivery.get("undelivered", 0),
            "delivery_rate": self.delivery_rate, "waiting_for_window": self.waiting,
            "expires_at": self.expires_at, "send_window": self.send_window.to_json() if self.send_window else None,
            "preflight": self.preflight, "watchdog": self.watchdog,
            "text": self.options.get("text"), "text_column": self.options.get("text_column"),
            "sender": self.options.get("sender"), "schedule": self.schedule or None,
            "delivery_rate_of_sent": self.delivery_rate_of_sent, "priority": self.priority,
            "account": self.account, "organization": self.organization,
        }


class CampaignStore:
    """Campaign-level reads and writes. ``client`` is a Redis client; keys come from ``keys``."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        # redis-py's reply types are unions of every possible reply; we know ours, so use Any.
        self.redis: Any = client
        self.keys = keys
        self._transition = client.register_script(script("transition"))
        self._store_batches = client.register_script(script("batch", "store_batches"))
        # Campaign id -> its account (None: expired), learnt by recent_in: an account never changes.
        self._account_of: dict[bytes, str | None] = {}

    # -- creation -----------------------------------------------------------------------------
    def create(self, name: str, messages: pd.DataFrame, *, window: int, cost: float = 0.0, currency: str = "",
               options: dict[str, Any] | None = None, preflight: dict[str, Any] | None = None,
               send_window: Window | None = None, expires_at: float | None = None,
               zones: list[str] | None = None, suppression_version: int | None = None,
               loading: bool = False, priority: str = fairshare.DEFAULT_PRIORITY, account: str = DEFAULT_ACCOUNT,
               organization: str = "") -> str:
        """Store a campaign and its batches in state ``queued``; returns its new id.

        ``messages`` has the columns of :data:`dispatcher.schema.names.MESSAGE_COLUMNS`, one row per
        message, in sending order.
        With ``zones`` (one time-zone key per message, equal keys contiguous), batches never mix
        keys, so a batch's send window is one question. ``window`` is the queue window (batches). With
        ``loading``, the campaign's list is still being stored (see :mod:`dispatcher.sending.loading`):
        it is never completed before that ends. ``priority`` (low, normal, high) weighs it in its lane's
        fair share: it joins the lane and the lane's windows are set again (``sending.fairshare``).
        ``account`` is the account it sends for and ``organization`` that account's organization
        ("" when unknown).

        Raises:
            InputError: when ``priority`` is not low, normal or high.
        """
        priority = fairshare.parse_priority(priority)
        campaign_id = secrets.token_hex(5)
        total = len(messages)
        bounds = batch_bounds(total, zones)
        batches = len(bounds)
        # Python values of the declared types (numpy scalars would not serialise the same).
        columns = payload.stored_columns(lambda name, kind: [kind(x) for x in messages[name].tolist()])
        self._write_batches(campaign_id, columns, bounds, zones)
        now = time.time()
        fields: dict[str, Any] = {
            "id": campaign_id, "name": name, "state": State.QUEUED.value, "reason": "", "total": total,
            "batches": batches, "enqueued": 0, "settled": 0, "window": window, "window_base": window,
            "priority": priority, "consec_fail": 0,
            "created_at": now, "cost": cost, "currency": currency,
            "options": orjson.dumps(options or {}), "preflight": orjson.dumps(preflight or {}),
            "parked": 0, "waiting": 0, **{f: 0 for f in COUNTERS.values()},
            "account": account, "organization": organization,
        }
        if loading:
            fields["loading"] = 1
        if send_window is not None:
            fields["send_window"] = orjson.dumps(send_window.to_json())
        if expires_at is not None:
            fields["expires_at"] = expires_at
        if suppression_version is not None:
            fields["supp_v"] = suppression_version
        pipe = self.redis.pipeline()
        pipe.hset(self.keys.campaign(campaign_id), mapping=fields)
        pipe.zadd(self.keys.campaigns(), {campaign_id: now})
        pipe.execute()
        fairshare.join(self.redis, self.keys, campaign_id)
        if batches == 0 and not loading:
            self.transition(campaign_id, State.COMPLETED, "nothing to send")
        return campaign_id

    def _write_batches(self, campaign_id: str, columns: dict[str, list[Any]], bounds: list[tuple[int, int]],
                       zones: list[str] | None) -> None:
        """Store the batches through ``lua/store_batches.lua``: ``lua/batch.lua`` alone writes a new batch."""
        # The Redis process that holds the batches now: a claim under another one reconciles first.
        run_id = era(self.redis)
        for start in range(0, len(bounds), _WRITE_CHUNK):
            keys: list[str] = []
            args: list[Any] = [run_id]
            for n, (lo, hi) in enumerate(bounds[start:start + _WRITE_CHUNK], start):
                keys += [self.keys.batch(campaign_id, n), self.keys.payload(campaign_id, n)]
                args += [hi - lo, payload.encode({k: v[lo:hi] for k, v in columns.items()}),
                         zones[lo] if zones is not None else ""]
            self._store_batches(keys=keys, args=args)

    # -- reads --------------------------------------------------------------------------------
    def get(self, campaign_id: str) -> CampaignInfo:
        """Read one campaign.

        Raises:
            UnknownItem: when no campaign has that id.
        """
        raw = self.redis.hgetall(self.keys.campaign(campaign_id))
        if not raw:
            raise self.missing(campaign_id)
        if b"id" not in raw or b"state" not in raw:
            raise UnknownItem(f"campaign {campaign_id}'s data in Redis is incomplete{self._loss_note()}; "
                             "it cannot be shown or resumed.")
        return _info(raw)

    def missing(self, campaign_id: str) -> UnknownItem:
        """The error :meth:`get` raises for an id no campaign has (also what a token outside a
        campaign's accounts is told, word for word, so that it cannot tell the two apart)."""
        return UnknownItem(f"no campaign with id {campaign_id!r}{self._loss_note()}; "
                           "`dispatcher list` shows the campaigns.")

    def _loss_note(self) -> str:
        """`` (Redis lost its data at ...)`` when a loss was recorded (see ``durability``), else empty."""
        last = self.redis.lindex(self.keys.losses(), 0)
        if last is None:
            return ""
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(orjson.loads(last)["at"]))
        return f" (Redis lost its data, noticed at {at})"

    def last_sweep(self) -> dict[str, Any] | None:
        """The watchdog's last sweep (see ``dispatcher.sending.watchdog``), or None before any."""
        raw = self.redis.get(self.keys.watchdog_last())
        return dict(orjson.loads(raw)) if raw else None

    def known(self, campaign_id: str) -> bool:
        """True when ``campaign_id`` was ever created here (its listing outlives its expired data)."""
        return self.redis.zscore(self.keys.campaigns(), campaign_id) is not None

    def recent(self, limit: int = 50, offset: int = 0) -> list[CampaignInfo]:
        """The newest ``limit`` campaigns after skipping ``offset``, newest first (expired ones are skipped)."""
        ids = self.redis.zrevrange(self.keys.campaigns(), offset, offset + limit - 1)
        pipe = self.redis.pipeline(transaction=False)
        for campaign_id in ids:
            pipe.hgetall(self.keys.campaign(campaign_id.decode()))
        return [_info(raw) for raw in pipe.execute() if b"id" in raw and b"state" in raw]

    def recent_in(self, accounts: Collection[str], limit: int = 50,
                  offset: int = 0) -> tuple[list[CampaignInfo], int]:
        """The newest ``limit`` campaigns of ``accounts`` after skipping ``offset`` of them, newest
        first, and how many such campaigns are kept (expired ones are not listed; like
        :meth:`count`, the count may include a few that expired since this store last looked).

        The listing has no index by account: each call reads every listed id (one ``ZRANGE``,
        about 130 ms per 100,000 campaigns in all), and each campaign's account once (it never
        changes, so this store remembers it: the first call reads them all, about 4 s per 100,000).
        """
        wanted = set(accounts)
        ids: list[bytes] = self.redis.zrevrange(self.keys.campaigns(), 0, -1)
        known = self._accounts_of(ids)
        matching = [campaign_id for campaign_id in ids if known[campaign_id] in wanted]
        chosen = matching[offset:offset + limit]
        pipe = self.redis.pipeline(transaction=False)
        for campaign_id in chosen:
            pipe.hgetall(self.keys.campaign(campaign_id.decode()))
        page: list[CampaignInfo] = []
        for campaign_id, raw in zip(chosen, pipe.execute(), strict=True):
            if b"id" in raw and b"state" in raw:
                page.append(_info(raw))
            else:  # expired since its account was learnt: counted no more
                self._account_of[campaign_id] = None
        return page, len(matching)

    def _accounts_of(self, ids: Sequence[bytes]) -> dict[bytes, str | None]:
        """The account of each campaign in ``ids`` (None once its data expired), read from Redis for
        the ones not seen before, :data:`_SCAN_CHUNK` per round trip."""
        unknown = [campaign_id for campaign_id in ids if campaign_id not in self._account_of]
        for start in range(0, len(unknown), _SCAN_CHUNK):
            chunk = unknown[start:start + _SCAN_CHUNK]
            pipe = self.redis.pipeline(transaction=False)
            for campaign_id in chunk:
                pipe.hmget(self.keys.campaign(campaign_id.decode()), "id", "account")
            for campaign_id, (stored_id, account) in zip(chunk, pipe.execute(), strict=True):
                # The id and the account are written in one transaction with the listing: a hash
                # without its id has expired (or is incomplete) and stays out of every list.
                self._account_of[campaign_id] = (
                    (account.decode() if account else DEFAULT_ACCOUNT) if stored_id is not None else None)
        return self._account_of

    def count(self) -> int:
        """How many campaigns are listed (some may have expired since)."""
        return int(self.redis.zcard(self.keys.campaigns()))

    def batch_states(self, campaign_id: str, numbers: Sequence[int]) -> list[str]:
        """The ``st`` of each batch in ``numbers`` (``p``, ``i``, ``u``, ``d``)."""
        pipe = self.redis.pipeline(transaction=False)
        for n in numbers:
            pipe.hget(self.keys.batch(campaign_id, n), "st")
        return [(st or b"").decode() for st in pipe.execute()]

    def iter_batches(
        self, campaign_id: str, chunk: int = 200
    ) -> Iterator[tuple[int, payload.BatchMessages, dict[int, Record]]]:
        """Yield ``(number, messages, records)`` for every batch, in order."""
        for n, messages, ledger, _ in self.iter_raw_batches(campaign_id, chunk):
            yield n, messages, {int(k): decode(v) for k, v in ledger.items()}

    def iter_raw_batches(
        self, campaign_id: str, chunk: int = 200, *, deliveries: bool = False
    ) -> Iterator[tuple[int, payload.BatchMessages, dict[bytes, bytes], dict[bytes, bytes]]]:
        """Yield ``(number, messages, raw ledger, raw delivery reports)`` for every batch, in order,
        reading ``chunk`` batches per round trip (the delivery reports only with ``deliveries``,
        else empty)."""
        batches = self.get(campaign_id).batches
        per = 3 if deliveries else 2
        for start in range(0, batches, chunk):
            numbers = range(start, min(batches, start + chunk))
            pipe = self.redis.pipeline(transaction=False)
            for n in numbers:
                pipe.get(self.keys.payload(campaign_id, n))
                pipe.hgetall(self.keys.ledger(campaign_id, n))
                if deliveries:
                    pipe.hgetall(self.keys.delivery(campaign_id, n))
            replies = pipe.execute()
            for i, n in enumerate(numbers):
                blob = replies[per * i] or self.blob(campaign_id, n) or b""
                yield n, payload.decode(blob, n), replies[per * i + 1], replies[per * i + 2] if deliveries else {}

    def blob(self, campaign_id: str, n: int) -> bytes | None:
        """Batch ``n``'s compressed messages, or None when it has none."""
        return blob_of(self.redis, self.keys, campaign_id, n)

    def next_window_opening(self, campaign_id: str) -> float | None:
        """Unix time when the campaign's next parked batch is released, or None."""
        first = self.redis.zrange(self.keys.parked_in(campaign_id), 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    def deliveries(self, campaign_id: str, n: int) -> dict[int, tuple[str, str, str]]:
        """Delivery reports of batch ``n``: index -> ``(status, eventAt, code)``."""
        raw = self.redis.hgetall(self.keys.delivery(campaign_id, n))
        return {int(k): _triple(v.decode()) for k, v in raw.items()}

    # -- state changes ------------------------------------------------------------------------
    def transition(self, campaign_id: str, target: State, reason: str = "") -> str:
        """Move a campaign to ``target`` if its current state allows it; returns the old state.

        Raises:
            UnknownItem: when no campaign has that id.
            InvalidTransition: when the current state cannot move to ``target``.
        """
        result = self._transition(keys=[self.keys.campaign(campaign_id)], args=[target.value, reason, time.time()])
        outcome = result[0].decode()
        if outcome == "missing":
            raise UnknownItem(f"no campaign with id {campaign_id!r}; `dispatcher list` shows the campaigns.")
        old = result[1].decode()
        if outcome == "refused" and old != target.value:
            raise InvalidTransition(f"campaign {campaign_id} is {old} and cannot become {target.value}.")
        if outcome == "ok":  # it joined or left the campaigns sending in its lane
            fairshare.rebalance_campaign(self.redis, self.keys, campaign_id)
        return old

    def expire(self, campaign_id: str, ttl_s: int) -> None:
        """Make every key of a finished campaign expire in ``ttl_s`` seconds."""
        info = self.get(campaign_id)
        pipe = self.redis.pipeline(transaction=False)
        for key in (self.keys.campaign(campaign_id), self.keys.rejects(campaign_id), self.keys.client_ids(campaign_id)):
            pipe.expire(key, ttl_s)
        pipe.expire(self.keys.inbound(campaign_id), ttl_s)
        pipe.expire(self.keys.campaign_events(campaign_id), ttl_s)
        pipe.expire(self.keys.kept_columns(campaign_id), ttl_s)
        pipe.expire(self.keys.parked_in(campaign_id), ttl_s)
        for n in range(info.batches):
            pipe.expire(self.keys.batch(campaign_id, n), ttl_s)
            pipe.expire(self.keys.payload(campaign_id, n), ttl_s)
            pipe.expire(self.keys.ledger(campaign_id, n), ttl_s)
            pipe.expire(self.keys.delivery(campaign_id, n), ttl_s)
        pipe.execute()

    def add_event(self, campaign_id: str, kind: str, by: str = "", reason: str = "",
                  at: float | None = None) -> None:
        """Append one timeline event (``paused``, ``resumed``, ``cancelled``...) to the campaign:
        when (Unix s), who (a token's name, ``command line``, ``dispatcher``) and why."""
        event = {"at": time.time() if at is None else at, "kind": kind, "by": by, "reason": reason}
        key = self.keys.campaign_events(campaign_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(key, orjson.dumps(event))
        pipe.ltrim(key, -1000, -1)  # a campaign paused and resumed forever keeps its last 1,000 events
        pipe.execute()

    def events(self, campaign_id: str) -> list[dict[str, Any]]:
        """The campaign's timeline events, oldest first (see :meth:`add_event`)."""
        return [orjson.loads(x) for x in self.redis.lrange(self.keys.campaign_events(campaign_id), 0, -1)]

    def store_rejects(self, campaign_id: str, rejects: Sequence[dict[str, Any]]) -> None:
        """Keep the preflight's rejects with the campaign (for ``report``)."""
        if not rejects:
            return
        pipe = self.redis.pipeline(transaction=False)
        for start in range(0, len(rejects), 5000):
            pipe.rpush(self.keys.rejects(campaign_id), *[orjson.dumps(r) for r in rejects[start:start + 5000]])
        pipe.execute()

    def rejects(self, campaign_id: str) -> list[dict[str, Any]]:
        """The preflight's rejects stored with the campaign."""
        return [orjson.loads(x) for x in self.redis.lrange(self.keys.rejects(campaign_id), 0, -1)]


def blob_of(client: Any, keys: Keys, campaign_id: str, n: int) -> bytes | None:
    """Batch ``n``'s compressed messages, or None when it has none.

    Batches stored before the messages had a key of their own keep them in the batch hash (``p``).
    """
    blob = client.get(keys.payload(campaign_id, n))
    if blob is None:
        blob = client.hget(keys.batch(campaign_id, n), "p")
    return blob if isinstance(blob, bytes) else None


def batch_bounds(total: int, zones: list[str] | None) -> list[tuple[int, int]]:
    """``[lo, hi)`` of each batch: at most ``MAX_BULK_ITEMS`` messages, never two zone keys in one."""
    bounds: list[tuple[int, int]] = []
    lo = 0
    while lo < total:
        hi = min(total, lo + MAX_BULK_ITEMS)
        if zones is not None:
            key = zones[lo]
            cut = next((i for i in range(lo + 1, hi) if zones[i] != key), hi)
            hi = cut
        bounds.append((lo, hi))
        lo = hi
    return bounds


def _info(raw: dict[bytes, bytes]) -> CampaignInfo:
    h = {k.decode(): v.decode() for k, v in raw.items()}

    def num(name: str) -> float | None:
        value = h.get(name)
        return float(value) if value else None

    counts = {name: int(h.get(field, 0)) for name, field in COUNTERS.items()}
    total = int(h.get("total", 0))
    counts = {"pending": total - sum(counts.values()), **counts}
    preflight = orjson.loads(h.get("preflight", "{}"))
    counts["suppressed"] += int(preflight.get("suppressed", 0))
    return CampaignInfo(
        id=h["id"], name=h.get("name", ""), state=State(h["state"]), reason=h.get("reason", ""), total=total,
        batches=int(h.get("batches", 0)), enqueued=int(h.get("enqueued", 0)), settled=int(h.get("settled", 0)),
        counts=counts, created_at=float(h.get("created_at", 0)), started_at=num("started_at"),
        finished_at=num("finished_at"), updated_at=num("updated_at"), cost=float(h.get("cost", 0)),
        currency=h.get("currency", ""), options=orjson.loads(h.get("options", "{}")), preflight=preflight,
        delivery={"delivered": int(h.get("d:delivered", 0)), "undelivered": int(h.get("d:undelivered", 0))},
        waiting=int(h.get("waiting", 0)), expires_at=num("expires_at"),
        send_window=Window.from_json(orjson.loads(h["send_window"])) if h.get("send_window") else None,
        watchdog={"at": float(h["wd_at"]), "batches": int(h.get("wd_batches", 0))} if h.get("wd_at") else {},
        schedule=h.get("schedule", ""), priority=h.get("priority") or fairshare.DEFAULT_PRIORITY,
        account=h.get("account") or DEFAULT_ACCOUNT, organization=h.get("organization", ""),
    )


def _triple(value: str) -> tuple[str, str, str]:
    """``status|eventAt|code`` (and, since issue 9, ``|micros|rank``, for ordering only)."""
    status, event_at, code = [*value.split("|"), "", ""][:3]
    return status, event_at, code
