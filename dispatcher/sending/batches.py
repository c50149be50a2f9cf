"""Atomic operations on one batch: claim it, record outcomes, reserve the next ones, reopen, cancel.

Each operation is one Lua script, so a batch's state, its per-message records and the campaign's
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
error), ``tz`` (its numbers' time zones, with a send window), ``p`` (compressed messages).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from dispatcher.keys import Keys

# KEYS[1] campaign, KEYS[2] batch, KEYS[3] ledger; ARGV[1] lease (µs).
# -> {'missing'} | {'done', tu} | {'busy', µs} | {'skip', state}
#    | {mode, rc, att, payload, fails, ledger, send_window, expires_at, tz}
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HGET', KEYS[1], 'state')
local b = redis.call('HMGET', KEYS[2], 'st', 'lease', 'rc', 'att', 'tu', 'fails')
if not state or not b[1] then return {'missing'} end
if b[1] == 'd' then return {'done', b[5] or ''} end
if b[1] == 'i' and tonumber(b[2] or '0') > now then return {'busy', tonumber(b[2]) - now} end
local rc = b[3] or '0'
local mode
if state == 'queued' or state == 'running' or (state == 'completed' and rc == '1') then
  -- A completed campaign still holding unknown messages is being reconciled: resolve, then send.
  mode = 'send'
elseif state == 'cancelled' and rc == '1' then
  mode = 'reconcile'
else
  return {'skip', state}
end
if state == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', t[1] .. '.' .. string.format('%06d', t[2]))
end
redis.call('HSET', KEYS[2], 'st', 'i', 'lease', string.format('%d', now + tonumber(ARGV[1])), 'rc', '1')
local c = redis.call('HMGET', KEYS[1], 'send_window', 'expires_at')
return {mode, rc, b[4] or '0', redis.call('HGET', KEYS[2], 'p'), b[6] or '0', redis.call('HGETALL', KEYS[3]),
        c[1] or '', c[2] or '', redis.call('HGET', KEYS[2], 'tz') or ''}
"""

# Shared tail: reserve the next batches for the queue window and complete the campaign.
# Expects locals: now_s (string). KEYS[1] campaign, KEYS[2] batch.
_RESERVE_AND_COMPLETE = """
local function reserve_and_complete(now_s, mark_batch)
  local c = redis.call('HMGET', KEYS[1], 'state', 'enqueued', 'settled', 'batches', 'window', 'parked')
  local state, enqueued, settled = c[1], tonumber(c[2]), tonumber(c[3])
  local batches, window, parked = tonumber(c[4]), tonumber(c[5]), tonumber(c[6] or '0')
  local a, b = 0, 0
  if (state == 'running' or state == 'queued') and enqueued < batches then
    -- Batches parked for their send window do not hold a queue slot.
    local free = window - (enqueued - settled - parked)
    if free > 0 then
      a = enqueued
      b = math.min(batches, enqueued + free)
      redis.call('HSET', KEYS[1], 'enqueued', b)
      if mark_batch then redis.call('HSET', KEYS[2], 'tu', a .. ':' .. b) end
    end
  end
  -- A campaign whose list is still loading (dispatcher.sending.loading) is never complete.
  local loading = redis.call('HGET', KEYS[1], 'loading') == '1'
  if settled >= batches and not loading and (state == 'running' or state == 'queued' or state == 'paused') then
    redis.call('HSET', KEYS[1], 'state', 'completed', 'finished_at', now_s, 'reason', '')
    state = 'completed'
  end
  return {a, b, state}
end
"""

# KEYS[1] campaign, KEYS[2] batch, KEYS[3] ledger
# ARGV[1] st when not all terminal ('p' or 'u'), ARGV[2] error, ARGV[3] POSTs made now (0/1),
# ARGV[4] failed attempt (0/1), ARGV[5] give up (0/1), ARGV[6] max consecutive failures,
# ARGV[7] outcome for the failure streak ('ok', 'failed' or ''), ARGV[8..] index, record pairs
# (record '-' takes an 'unknown' message back to pending: reconciliation proved it was not sent).
# -> {st, reserve_from, reserve_to, campaign_state}
_RECORD = _RESERVE_AND_COMPLETE + """
local t = redis.call('TIME')
local now_s = t[1] .. '.' .. string.format('%06d', t[2])
local counter = {s='n:sent', r='n:rejected', f='n:failed', u='n:unknown', c='n:cancelled', e='n:expired',
                 x='n:suppressed'}
local terminal = {s=true, r=true, f=true, c=true, e=true, x=true}
for i = 8, #ARGV, 2 do
  local old = redis.call('HGET', KEYS[3], ARGV[i])
  local oc = old and string.sub(old, 1, 1)
  if not (oc and terminal[oc]) then
    if oc == 'u' then redis.call('HINCRBY', KEYS[1], 'n:unknown', -1) end
    if ARGV[i + 1] == '-' then
      redis.call('HDEL', KEYS[3], ARGV[i])
    else
      redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
      redis.call('HINCRBY', KEYS[1], counter[string.sub(ARGV[i + 1], 1, 1)], 1)
    end
  end
end
local done = 0
for _, v in ipairs(redis.call('HVALS', KEYS[3])) do
  if terminal[string.sub(v, 1, 1)] then done = done + 1 end
end
local size = tonumber(redis.call('HGET', KEYS[2], 'size'))
local st = ARGV[1]
if done >= size then st = 'd' end
local rc = '0'
if st == 'u' then rc = '1' end
redis.call('HSET', KEYS[2], 'st', st, 'rc', rc, 'lease', '0', 'ut', now_s)
if ARGV[2] ~= '' then redis.call('HSET', KEYS[2], 'err', ARGV[2]) end
if ARGV[3] == '1' then redis.call('HINCRBY', KEYS[2], 'att', 1) end
if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[2], 'fails', 1) end
if ARGV[7] == 'ok' then
  redis.call('HSET', KEYS[1], 'consec_fail', 0)
elseif ARGV[7] == 'failed' then
  local streak = redis.call('HINCRBY', KEYS[1], 'consec_fail', 1)
  local state = redis.call('HGET', KEYS[1], 'state')
  if streak >= tonumber(ARGV[6]) and (state == 'running' or state == 'queued') then
    redis.call('HSET', KEYS[1], 'state', 'paused', 'reason', 'consecutive_failures')
  end
end
redis.call('HSET', KEYS[1], 'updated_at', now_s)
local r = {0, 0, redis.call('HGET', KEYS[1], 'state')}
if (st == 'd' or ARGV[5] == '1') and redis.call('HGET', KEYS[2], 'settled') ~= '1' then
  redis.call('HSET', KEYS[2], 'settled', '1')
  redis.call('HINCRBY', KEYS[1], 'settled', 1)
  r = reserve_and_complete(now_s, true)
end
return {st, r[1], r[2], r[3]}
"""

# KEYS[1] campaign, KEYS[2] batch, KEYS[3] all parked, KEYS[4] campaign's parked
# ARGV[1] member 'cid:n', ARGV[2] release time (Unix s), ARGV[3] batch state to leave ('p' or 'u').
# Park a claimed batch until its send window opens. -> {reserve_from, reserve_to, state}
_PARK = _RESERVE_AND_COMPLETE + """
local t = redis.call('TIME')
redis.call('HSET', KEYS[2], 'st', ARGV[3], 'rc', ARGV[3] == 'u' and '1' or '0', 'lease', '0')
if redis.call('HGET', KEYS[2], 'parked') ~= '1' then
  redis.call('HSET', KEYS[2], 'parked', '1')
  redis.call('HINCRBY', KEYS[1], 'parked', 1)
  redis.call('HINCRBY', KEYS[1], 'waiting', tonumber(redis.call('HGET', KEYS[2], 'size')))
end
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
return reserve_and_complete(t[1] .. '.' .. string.format('%06d', t[2]), false)
"""

# KEYS[1] all parked; ARGV[1] now (Unix s), ARGV[2] most to release, ARGV[3] key prefix.
# Take the parked batches that are due out of the sets. -> {'cid:n', ...}
_RELEASE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local sep = string.find(member, ':', 1, true)
  local cid, n = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
  local campaign = ARGV[3] .. ':c:' .. cid
  local batch = campaign .. ':b:' .. n
  redis.call('ZREM', KEYS[1], member)
  redis.call('ZREM', campaign .. ':parked', member)
  if redis.call('HGET', batch, 'parked') == '1' then
    redis.call('HSET', batch, 'parked', '0')
    redis.call('HINCRBY', campaign, 'parked', -1)
    redis.call('HINCRBY', campaign, 'waiting', -tonumber(redis.call('HGET', batch, 'size') or '0'))
  end
end
return due
"""

# KEYS[1] campaign, KEYS[2] unused batch key. -> {reserve_from, reserve_to, state}
_RESERVE = _RESERVE_AND_COMPLETE + """
local t = redis.call('TIME')
return reserve_and_complete(t[1] .. '.' .. string.format('%06d', t[2]), false)
"""

# KEYS[1] campaign, KEYS[2] batch. Give an unsettled or given-up batch fresh attempts.
# -> 1 when the batch is not done (and should be enqueued), else 0.
_REOPEN = """
local b = redis.call('HMGET', KEYS[2], 'st', 'settled')
if not b[1] or b[1] == 'd' then return 0 end
if b[2] == '1' then
  redis.call('HSET', KEYS[2], 'settled', '0')
  redis.call('HINCRBY', KEYS[1], 'settled', -1)
end
redis.call('HSET', KEYS[2], 'fails', 0)
return 1
"""

# KEYS[1] campaign, KEYS[2] batch, KEYS[3] ledger. Cancel a batch nobody is sending.
# -> number of messages marked cancelled.
_CANCEL = """
local b = redis.call('HMGET', KEYS[2], 'st', 'rc', 'size', 'att', 'settled')
if b[1] ~= 'p' or b[2] == '1' then return 0 end
local n = 0
local terminal = {s=true, r=true, f=true, c=true, e=true, x=true}
for i = 0, tonumber(b[3]) - 1 do
  local old = redis.call('HGET', KEYS[3], tostring(i))
  if not (old and terminal[string.sub(old, 1, 1)]) then
    redis.call('HSET', KEYS[3], tostring(i), 'c|' .. (b[4] or '0') .. '|cancelled')
    n = n + 1
  end
end
redis.call('HINCRBY', KEYS[1], 'n:cancelled', n)
redis.call('HSET', KEYS[2], 'st', 'd', 'rc', '0')
if redis.call('HGET', KEYS[2], 'parked') == '1' then
  redis.call('HSET', KEYS[2], 'parked', '0')
  redis.call('HINCRBY', KEYS[1], 'parked', -1)
  redis.call('HINCRBY', KEYS[1], 'waiting', -tonumber(b[3]))
end
if b[5] ~= '1' then
  redis.call('HSET', KEYS[2], 'settled', '1')
  redis.call('HINCRBY', KEYS[1], 'settled', 1)
end
return n
"""


@dataclass(frozen=True, slots=True)
class Claim:
    """What a claim attempt found.

    ``kind`` is ``send`` or ``reconcile`` (claimed: you hold the lease), ``done``, ``busy``
    (someone holds the lease for ``wait_s`` more seconds), ``skip`` (the campaign is ``state``)
    or ``missing``. ``must_reconcile`` means an earlier POST's outcome is unknown.
    """

    kind: str
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

    @property
    def claimed(self) -> bool:
        return self.kind in ("send", "reconcile")


@dataclass(frozen=True, slots=True)
class Recorded:
    """What recording did: the batch's new ``st``, the batches it reserved, the campaign's state."""

    batch_state: str
    reserved: range
    campaign_state: str


class BatchOps:
    """The batch-level Lua operations, registered once per Redis client."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis: Any = client
        self.keys = keys
        self._claim = client.register_script(_CLAIM)
        self._record = client.register_script(_RECORD)
        self._reserve = client.register_script(_RESERVE)
        self._park = client.register_script(_PARK)
        self._release = client.register_script(_RELEASE)
        self._reopen = client.register_script(_REOPEN)
        self._cancel = client.register_script(_CANCEL)

    def claim(self, cid: str, n: int, lease_s: float) -> Claim:
        """Try to take batch ``n`` for sending or reconciling, holding it for ``lease_s`` seconds."""
        keys = [self.keys.campaign(cid), self.keys.batch(cid, n), self.keys.ledger(cid, n)]
        raw = self._claim(keys=keys, args=[int(lease_s * 1e6)])
        kind = raw[0].decode()
        if kind in ("send", "reconcile"):
            flat = raw[5]
            records = {int(flat[i]): flat[i + 1].decode() for i in range(0, len(flat), 2)}
            return Claim(kind, must_reconcile=raw[1] == b"1", attempts=int(raw[2]), payload=bytes(raw[3] or b""),
                         fails=int(raw[4]), records=records, send_window=raw[6].decode(),
                         expires_at=float(raw[7]) if raw[7] else None,
                         zones=tuple(raw[8].decode().split(",")) if raw[8] else ())
        if kind == "done":
            return Claim(kind, reserved=_parse_range(raw[1]))
        if kind == "busy":
            return Claim(kind, wait_s=int(raw[1]) / 1e6)
        if kind == "skip":
            return Claim(kind, state=raw[1].decode())
        return Claim("missing")

    def record(
        self,
        cid: str,
        n: int,
        records: Sequence[tuple[int, str]],
        *,
        otherwise: str = "p",
        error: str = "",
        posted: bool = False,
        failed_attempt: bool = False,
        give_up: bool = False,
        streak: str = "",
        max_consecutive_failures: int = 5,
    ) -> Recorded:
        """Write message records and move the batch on, atomically with the campaign counters.

        ``otherwise`` is the batch state when some messages are still not terminal: ``p`` (send
        again later) or ``u`` (outcome unknown, reconcile first). ``streak`` is ``ok`` (a POST
        got through), ``failed`` (the batch gave up failing) or empty (neither).
        """
        args: list[str | int] = [otherwise, error[:300], int(posted), int(failed_attempt), int(give_up),
                                 max_consecutive_failures, streak]
        for index, record in records:
            args += [index, record]
        keys = [self.keys.campaign(cid), self.keys.batch(cid, n), self.keys.ledger(cid, n)]
        st, a, b, state = self._record(keys=keys, args=args)
        return Recorded(st.decode(), range(int(a), int(b)), state.decode())

    def reserve(self, cid: str) -> range:
        """Reserve batches to fill the campaign's queue window; returns the batch numbers."""
        a, b, _ = self._reserve(keys=[self.keys.campaign(cid), self.keys.campaign(cid)], args=[])
        return range(int(a), int(b))

    def park(self, cid: str, n: int, until: float, unknown: bool) -> range:
        """Put a claimed batch aside until ``until`` (Unix s); returns batches reserved in its place."""
        keys = [self.keys.campaign(cid), self.keys.batch(cid, n), self.keys.parked(), self.keys.parked_in(cid)]
        a, b, _ = self._park(keys=keys, args=[f"{cid}:{n}", until, "u" if unknown else "p"])
        return range(int(a), int(b))

    def release_due(self, now: float, limit: int = 1000) -> list[tuple[str, int]]:
        """Take every parked batch due at ``now`` (Unix s) out of the waiting sets: ``[(cid, n)]``."""
        members = self._release(keys=[self.keys.parked()], args=[now, limit, self.keys.prefix])
        released = []
        for member in members:
            cid, _, n = member.decode().partition(":")
            released.append((cid, int(n)))
        return released

    def reopen(self, cid: str, numbers: Sequence[int]) -> list[int]:
        """Give the not-done batches among ``numbers`` fresh attempts; returns those to enqueue."""
        pipe = self.redis.pipeline(transaction=False)
        for n in numbers:
            self._reopen(keys=[self.keys.campaign(cid), self.keys.batch(cid, n)], args=[], client=pipe)
        return [n for n, flag in zip(numbers, pipe.execute(), strict=True) if int(flag)]

    def cancel(self, cid: str, numbers: Sequence[int]) -> int:
        """Mark every unsent message of the idle batches among ``numbers`` cancelled; returns how many."""
        pipe = self.redis.pipeline(transaction=False)
        for n in numbers:
            keys = [self.keys.campaign(cid), self.keys.batch(cid, n), self.keys.ledger(cid, n)]
            self._cancel(keys=keys, args=[], client=pipe)
        return sum(int(x) for x in pipe.execute())

    def unknown_batches(self, cid: str, batches: int, older_than: float) -> list[int]:
        """Batches whose outcome is unknown (``st`` u) and untouched since ``older_than`` (Unix s)."""
        pipe = self.redis.pipeline(transaction=False)
        for n in range(batches):
            pipe.hmget(self.keys.batch(cid, n), "st", "ut")
        return [n for n, (st, ut) in enumerate(pipe.execute())
                if st == b"u" and float(ut or 0) <= older_than]

    def reserved_but_unclaimed(self, cid: str, reserved: range) -> list[int]:
        """Of a range this batch reserved, the batches still pending and never attempted."""
        if not reserved:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for n in reserved:
            pipe.hmget(self.keys.batch(cid, n), "st", "att")
        return [n for n, (st, att) in zip(reserved, pipe.execute(), strict=True)
                if st == b"p" and (att in (None, b"0"))]


def _parse_range(raw: bytes | None) -> tuple[int, int] | None:
    if not raw:
        return None
    a, _, b = raw.decode().partition(":")
    return int(a), int(b)
