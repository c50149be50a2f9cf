"""Atomic operations on one batch: claim it, record outcomes, reserve the next ones, reopen, cancel.

Each operation is one Lua script (``lua/*.lua``, see :mod:`dispatcher.schema.scripts`),
so a batch's state, its per-message records and the campaign's
counters always change together. The rules that make sending exactly-once live here:

* a batch is *claimed* before any POST, with a lease and ``rc=1`` ("a POST may be in flight");
* ``rc`` is cleared only when the outcome is known; a claimer that finds ``rc=1`` (an unknown
  outcome, or a holder whose lease expired because its worker died) must reconcile by
  ``clientId`` before sending anything in the batch again;
* a terminal record is never overwritten, and each batch is counted as settled exactly once.

Batch hash fields: ``st`` (p pending, i in flight, u unknown, d done), ``size`` (messages), ``att``
(POSTs made), ``fails`` (failed attempts), ``lease`` (Unix µs until which the claimer holds it),
``rc`` (1: reconcile by ``clientId`` before sending), ``settled`` (1 once counted in the campaign's
``settled``), ``parked`` (1 while it waits for its send window), ``ut`` (Unix s of the last
record), ``tu`` (the batch range this batch reserved when it settled, ``a:b``), ``err`` (the last
error), ``tz`` (its numbers' time zones, with a send window), ``fence``, ``tok`` and ``inc`` (the
fencing token and the Redis run it was issued under). The compressed messages have a key of their
own (``Keys.payload``): with only short fields (a value over 64 bytes, such as a long ``err``, is
rare), Redis keeps the hash in its compact listpack encoding, several times smaller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import redis

from dispatcher.keys import Keys
from dispatcher.schema.names import DEFAULT_ACCOUNT, BatchState
from dispatcher.schema.scripts import script
from dispatcher.sending.ratelimit import SlotRequest


class ClaimKind(StrEnum):
    """What a claim attempt found."""

    #: Claimed: send (after reconciling when ``must_reconcile``).
    SEND = "send"
    #: Claimed for a cancelled campaign: resolve unknown messages, never send.
    RECONCILE = "reconcile"
    DONE = "done"
    #: Another worker holds a live lease.
    BUSY = "busy"
    #: The campaign is in a state that sends nothing.
    SKIP = "skip"
    MISSING = "missing"


class Streak(StrEnum):
    """How an attempt moves the campaign's consecutive-failure streak."""

    #: A POST got through: the streak ends.
    OK = "ok"
    #: The batch gave up failing: the streak grows.
    FAILED = "failed"
    #: Neither.
    NONE = ""


@dataclass(frozen=True, slots=True)
class Claim:
    """What a claim attempt found.

    ``kind`` is ``send`` or ``reconcile`` (claimed: you hold the lease), ``done``, ``busy``
    (someone holds the lease for ``wait_s`` more seconds), ``skip`` (the campaign is ``state``)
    or ``missing``. ``must_reconcile`` means an earlier POST's outcome is unknown.
    """

    kind: ClaimKind
    must_reconcile: bool = False
    attempts: int = 0
    payload: bytes = b""
    wait_s: float = 0.0
    state: str = ""
    reserved: tuple[int, int] | None = None
    fails: int = 0
    #: Existing records of the batch: index -> encoded record.
    records: dict[int, str] = field(default_factory=dict)
    #: The campaign's send window (JSON) and expiry (Unix s), and the batch's time zones.
    send_window: str = ""
    expires_at: float | None = None
    zones: tuple[str, ...] = ()
    #: The fencing token of this claim: only its holder may record, park or renew the batch.
    token: str = ""
    #: False when the suppression list cannot hold any of the batch's numbers (it is empty, or has
    #: not grown since the campaign's preflight checked them).
    check_suppression: bool = True
    #: The rate-limit slot the claim took (``lua/slot.lua`` in seconds: 0.0 now, -s booked that far
    #: ahead, +s to wait), or None when it took none.
    slot_s: float | None = None

    @property
    def claimed(self) -> bool:
        return self.kind in (ClaimKind.SEND, ClaimKind.RECONCILE)


@dataclass(frozen=True, slots=True)
class Recorded:
    """What recording did: the batch's new ``st``, the batches it reserved, the campaign's state.

    ``batch_state`` is None when the token was stale: only terminal records were added.
    """

    batch_state: BatchState | None
    reserved: range
    campaign_state: str

    @property
    def stale(self) -> bool:
        """True when another claim had taken the batch: nothing but terminal records was written."""
        return self.batch_state is None


class BatchOps:
    """The batch-level Lua operations, registered once per Redis client."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis: Any = client
        self.keys = keys
        self._claim = client.register_script(script("slot", "claim"))
        self._record = client.register_script(script("reserve", "cancel_rest", "record"))
        self._reserve = client.register_script(script("reserve", "reserve_only"))
        self._park = client.register_script(script("reserve", "cancel_rest", "park"))
        self._unpark = client.register_script(script("unpark"))
        self._reopen = client.register_script(script("reopen"))
        self._cancel = client.register_script(script("cancel_rest", "cancel"))
        self._renew = client.register_script(script("renew"))

    def claim(self, campaign_id: str, n: int, lease_s: float, slot: SlotRequest | None = None,
              account: str = DEFAULT_ACCOUNT) -> Claim:
        """Try to take batch ``n`` for sending or reconciling, holding it for ``lease_s`` seconds.

        With ``slot`` (the bulk lane's), a claim that can send at once takes its rate-limit slot in
        the same call and says whether the suppression lists (the global one and that of
        ``account``, the campaign's) need checking (see ``lua/claim.lua``).
        """
        keys = [*self._batch_keys(campaign_id, n), self.keys.payload(campaign_id, n)]
        args = [int(lease_s * 1e6)]
        if slot is not None:
            keys += [*slot.keys, self.keys.suppression(), self.keys.suppression_version(),
                     self.keys.account_suppression(account)]
            args += slot.args
        raw = self._claim(keys=keys, args=args)
        kind = ClaimKind(raw[0].decode())
        if kind in (ClaimKind.SEND, ClaimKind.RECONCILE):
            flat = raw[5]
            records = {int(flat[i]): flat[i + 1].decode() for i in range(0, len(flat), 2)}
            return Claim(kind, must_reconcile=raw[1] == b"1", attempts=int(raw[2]), payload=bytes(raw[3] or b""),
                         fails=int(raw[4]), records=records, send_window=raw[6].decode(),
                         expires_at=float(raw[7]) if raw[7] else None,
                         zones=tuple(raw[8].decode().split(",")) if raw[8] else (), token=raw[9].decode(),
                         check_suppression=raw[10] != b"0",
                         slot_s=int(raw[11]) / 1e6 if raw[11] not in (b"", None) else None)
        if kind == ClaimKind.DONE:
            return Claim(kind, reserved=_parse_range(raw[1]))
        if kind == ClaimKind.BUSY:
            return Claim(kind, wait_s=int(raw[1]) / 1e6)
        if kind == ClaimKind.SKIP:
            return Claim(kind, state=raw[1].decode())
        return Claim(ClaimKind.MISSING)

    def record(
        self,
        campaign_id: str,
        n: int,
        records: Sequence[tuple[int, str]],
        *,
        token: str,
        otherwise: BatchState = BatchState.PENDING,
        error: str = "",
        posted: bool = False,
        failed_attempt: bool = False,
        give_up: bool = False,
        streak: Streak = Streak.NONE,
        max_consecutive_failures: int = 5,
    ) -> Recorded:
        """Write message records and move the batch on, atomically with the campaign counters.

        ``otherwise`` is the batch state when some messages are still not terminal: pending (send
        again later) or unknown (reconcile first). ``streak`` says how the failure streak moves.
        ``token`` is the claim's: a stale one adds terminal records and changes nothing else.
        """
        # Records never hold a newline (ledger.encode replaces them), so one joined argument carries them all.
        args = [token, BatchState(otherwise).value, error[:300], int(posted), int(failed_attempt),
                int(give_up), max_consecutive_failures, Streak(streak).value,
                "\n".join([f"{index}:{record}" for index, record in records])]
        st, a, b, state = self._record(keys=self._batch_keys(campaign_id, n), args=args)
        batch_state = None if st == b"stale" else BatchState(st.decode())
        return Recorded(batch_state, range(int(a), int(b)), state.decode())

    def renew(self, campaign_id: str, n: int, token: str, lease_s: float) -> float:
        """Extend the lease of a claimed batch to ``lease_s`` from now, if ``token`` still holds it.

        Returns the seconds the lease now has left: 0.0 when it had already run out, -1.0 when
        another claim took the batch. The caller must not POST unless it gets enough.
        """
        left_us = int(self._renew(keys=[self.keys.batch(campaign_id, n)], args=[token, int(lease_s * 1e6)]))
        return -1.0 if left_us < 0 else left_us / 1e6

    def renew_replicated(self, campaign_id: str, n: int, token: str, lease_s: float, replicas: int,
                         wait_s: float) -> tuple[float, int]:
        """:meth:`renew`, then ``WAIT`` up to ``wait_s`` seconds for ``replicas`` replicas to acknowledge
        it, on the same connection: WAIT counts the writes of its own connection, and a replica that
        has the renewal has the claim before it too (one replication stream, in order).

        Returns ``(seconds of lease left as renew returns them, replicas that acknowledged)``; the
        caller must not POST with fewer acknowledgements than it asked for.
        """
        pipe = self.redis.pipeline(transaction=False)
        self._renew(keys=[self.keys.batch(campaign_id, n)], args=[token, int(lease_s * 1e6)], client=pipe)
        pipe.wait(replicas, max(1, int(wait_s * 1000)))
        left_us, acks = pipe.execute()
        return (-1.0 if int(left_us) < 0 else int(left_us) / 1e6), int(acks)

    def reserve(self, campaign_id: str) -> range:
        """Reserve batches to fill the campaign's queue window; returns the batch numbers."""
        a, b, _ = self._reserve(keys=[self.keys.campaign(campaign_id)], args=[])
        return range(int(a), int(b))

    def park(self, campaign_id: str, n: int, until: float, unknown: bool, token: str) -> tuple[range, str]:
        """Put a claimed batch aside until ``until`` (Unix s).

        Returns the batches reserved in its place and what happened: ``parked``, ``stale`` (another
        claim holds the batch: nothing changed) or ``cancelled`` (the campaign was cancelled).
        """
        keys = [*self._batch_keys(campaign_id, n), self.keys.parked(), self.keys.parked_in(campaign_id)]
        leave = BatchState.UNKNOWN if unknown else BatchState.PENDING
        a, b, _, what = self._park(keys=keys, args=[token, _member(campaign_id, n), until, leave.value])
        return range(int(a), int(b)), what.decode()

    def due(self, now: float, limit: int = 1000) -> list[tuple[str, int]]:
        """Parked batches due at ``now`` (Unix s), left in the waiting sets: ``[(campaign_id, n)]``."""
        members = self.redis.zrangebyscore(self.keys.parked(), "-inf", now, start=0, num=limit)
        due = []
        for member in members:
            campaign_id, _, n = member.decode().partition(":")
            due.append((campaign_id, int(n)))
        return due

    def unpark(self, batches: Sequence[tuple[str, int]]) -> None:
        """Take ``[(campaign_id, n)]`` out of the waiting sets (once their tasks are published)."""
        pipe = self.redis.pipeline(transaction=False)
        for campaign_id, n in batches:
            keys = [self.keys.parked(), self.keys.parked_in(campaign_id), self.keys.campaign(campaign_id),
                    self.keys.batch(campaign_id, n)]
            self._unpark(keys=keys, args=[_member(campaign_id, n)], client=pipe)
        pipe.execute()

    def reopen(self, campaign_id: str, numbers: Sequence[int]) -> list[int]:
        """Give the not-done batches among ``numbers`` fresh attempts; returns those to enqueue."""
        pipe = self.redis.pipeline(transaction=False)
        for n in numbers:
            keys = [self.keys.campaign(campaign_id), self.keys.batch(campaign_id, n)]
            self._reopen(keys=keys, args=[], client=pipe)
        return [n for n, flag in zip(numbers, pipe.execute(), strict=True) if int(flag)]

    def cancel(self, campaign_id: str, numbers: Sequence[int]) -> int:
        """Mark every unsent message of the idle batches among ``numbers`` cancelled; returns how many."""
        pipe = self.redis.pipeline(transaction=False)
        for n in numbers:
            self._cancel(keys=self._batch_keys(campaign_id, n), args=[], client=pipe)
        return sum(int(x) for x in pipe.execute())

    def unknown_batches(self, campaign_id: str, batches: int, older_than: float) -> list[int]:
        """Batches whose outcome is unknown (``st`` u) and untouched since ``older_than`` (Unix s)."""
        pipe = self.redis.pipeline(transaction=False)
        for n in range(batches):
            pipe.hmget(self.keys.batch(campaign_id, n), "st", "ut")
        return [n for n, (st, ut) in enumerate(pipe.execute())
                if st == BatchState.UNKNOWN.encode() and float(ut or 0) <= older_than]

    def reserved_but_unclaimed(self, campaign_id: str, reserved: range) -> list[int]:
        """Of a range this batch reserved, the batches still pending and never attempted."""
        if not reserved:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for n in reserved:
            pipe.hmget(self.keys.batch(campaign_id, n), "st", "att")
        return [n for n, (st, att) in zip(reserved, pipe.execute(), strict=True)
                if st == BatchState.PENDING.encode() and (att in (None, b"0"))]

    def _batch_keys(self, campaign_id: str, n: int) -> list[str]:
        return [self.keys.campaign(campaign_id), self.keys.batch(campaign_id, n), self.keys.ledger(campaign_id, n)]


def _member(campaign_id: str, n: int) -> str:
    """A batch's member in the parked sets."""
    return f"{campaign_id}:{n}"


def _parse_range(raw: bytes | None) -> tuple[int, int] | None:
    if not raw:
        return None
    a, _, b = raw.decode().partition(":")
    return int(a), int(b)
