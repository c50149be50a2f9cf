"""Delivery reports (DLRs): parse them and apply them to the per-message records, idempotently.

A report names its message by ``clientId`` (``{campaign}-{batch}-{index}``, see
``dispatcher.sending.payload``), which exists before the send, so a report can be applied even when it
arrives before the send's outcome was recorded. Applying is one Lua script: the same report twice
changes nothing, an older report never replaces a newer one, the ``delivered``/``undelivered``
counters move only on a change of class, and because a report proves Instasent accepted the
message, a missing or ``unknown`` send record becomes ``sent`` (a terminal record is never
touched). Reports for a campaign this Redis does not know are held and retried later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import orjson
import redis
import redis.asyncio as aioredis

from dispatcher.delivery.batched import BatchedScript
from dispatcher.delivery.held import HeldReports
from dispatcher.errors import InputError
from dispatcher.keys import Keys
from dispatcher.sending.payload import parse_client_id

#: Final statuses, by counter class; the others (sent, accepted, buffered, unknown) are not final.
DELIVERED = frozenset({"delivered"})
UNDELIVERED = frozenset({"failed", "expired", "rejected", "error", "canceled"})

# KEYS[1] campaign, KEYS[2] delivery hash, KEYS[3] ledger
# ARGV[1] index, ARGV[2] status, ARGV[3] eventAt (ISO 8601 UTC, comparable as text), ARGV[4] code,
# ARGV[5] class ('d', 'u' or ''), ARGV[6] Instasent id.
# -> 'missing' | 'duplicate' | 'stale' | 'applied' | 'applied+sent'
_APPLY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
local value = ARGV[2] .. '|' .. ARGV[3] .. '|' .. ARGV[4]
local old = redis.call('HGET', KEYS[2], ARGV[1])
local old_class = ''
if old then
  if old == value then return 'duplicate' end
  local sep = string.find(old, '|', 1, true)
  local rest = string.sub(old, sep + 1)
  local old_at = string.sub(rest, 1, (string.find(rest, '|', 1, true) or 0) - 1)
  if old_at > ARGV[3] then return 'stale' end
  local old_status = string.sub(old, 1, sep - 1)
  if old_status == 'delivered' then old_class = 'd'
  elseif ({failed=1, expired=1, rejected=1, error=1, canceled=1})[old_status] then old_class = 'u' end
end
redis.call('HSET', KEYS[2], ARGV[1], value)
if old_class ~= ARGV[5] then
  if old_class == 'd' then redis.call('HINCRBY', KEYS[1], 'd:delivered', -1) end
  if old_class == 'u' then redis.call('HINCRBY', KEYS[1], 'd:undelivered', -1) end
  if ARGV[5] == 'd' then redis.call('HINCRBY', KEYS[1], 'd:delivered', 1) end
  if ARGV[5] == 'u' then redis.call('HINCRBY', KEYS[1], 'd:undelivered', 1) end
end
local record = redis.call('HGET', KEYS[3], ARGV[1])
local code = record and string.sub(record, 1, 1)
if not record or code == 'u' then
  if code == 'u' then redis.call('HINCRBY', KEYS[1], 'n:unknown', -1) end
  redis.call('HSET', KEYS[3], ARGV[1], 's|0|' .. ARGV[6])
  redis.call('HINCRBY', KEYS[1], 'n:sent', 1)
  return 'applied+sent'
end
return 'applied'
"""


@dataclass(frozen=True, slots=True)
class Report:
    """One webhook call: a delivery report, or an inbound message when ``message`` is set."""

    instasent_id: str
    client_id: str
    status: str
    code: int
    event_at: str
    message: str | None = None
    sender: str = ""
    to: str = ""

    @property
    def is_inbound(self) -> bool:
        return self.message is not None


def parse_reports(body: bytes) -> list[Report]:
    """Parse a webhook body: one JSON object, or a list of them.

    Raises:
        InputError: when the body is not JSON or an object lacks what a report needs.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InputError("the body is not JSON") from None
    items = data if isinstance(data, list) else [data]
    return [_report(item) for item in items]


def _report(item: Any) -> Report:
    if not isinstance(item, dict):
        raise InputError("a report must be a JSON object")
    message = item.get("message")
    status = item.get("status")
    if message is None and (not isinstance(status, str) or not status):
        raise InputError("a delivery report needs a status")
    if message is None and not isinstance(item.get("clientId"), str):
        raise InputError("a delivery report needs a clientId")
    try:
        code = int(item.get("code") or 0)
    except (TypeError, ValueError):
        raise InputError("code must be a number") from None
    return Report(instasent_id=str(item.get("id") or ""), client_id=str(item.get("clientId") or ""),
                  status=str(status or "received").lower(), code=code, event_at=str(item.get("eventAt") or ""),
                  message=None if message is None else str(message), sender=str(item.get("from") or ""),
                  to=str(item.get("to") or ""))


def status_class(status: str) -> str:
    """``d`` for delivered, ``u`` for a final failure, ``""`` for anything not final."""
    if status in DELIVERED:
        return "d"
    return "u" if status in UNDELIVERED else ""


def apply_call(keys: Keys, report: Report) -> tuple[list[str], list[str | int]] | None:
    """The keys and arguments of ``_APPLY`` for one report; None when its clientId is not one of ours."""
    where = parse_client_id(report.client_id)
    if where is None:
        return None
    cid, n, index = where
    return ([keys.campaign(cid), keys.delivery(cid, n), keys.ledger(cid, n)],
            [index, report.status, report.event_at, report.code, status_class(report.status), report.instasent_id])


class DeliveryBook:
    """Applies delivery reports to Redis; one instance per process."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis: Any = client
        self.keys = keys
        self._apply = client.register_script(_APPLY)
        self.held = HeldReports(client, keys)

    def apply(self, report: Report) -> str:
        """Apply one delivery report; returns what happened (see ``_APPLY``, plus ``held``, ``foreign``)."""
        call = apply_call(self.keys, report)
        if call is None:
            return "foreign"
        outcome = str(self._apply(keys=call[0], args=call[1]).decode())
        if outcome == "missing":
            self.hold(report)
            return "held"
        return outcome

    def hold(self, report: Report) -> None:
        """Keep a report whose campaign is unknown here, to apply it when it can be (see ``held``)."""
        self.held.hold(f"{report.client_id}|{report.status}|{report.event_at}", orjson.dumps(_as_dict(report)))

    def retry_held(self) -> int:
        """Apply held reports whose campaign now exists, dropping expired ones; returns how many were applied."""
        return self.held.retry(lambda blob: self.apply(Report(**orjson.loads(blob))))


class AsyncDeliveryBook:
    """:meth:`DeliveryBook.apply` on an asyncio client, for the receiver's event loop.

    The same script on the same keys, pipelined with the other reports of the same event-loop
    turn (``dispatcher.delivery.batched``); the rare hold of a report for an unknown campaign goes
    through ``book`` (blocking) in a worker thread.
    """

    def __init__(self, client: aioredis.Redis, book: DeliveryBook) -> None:
        self.book = book
        self._apply = BatchedScript(client, _APPLY)

    async def apply(self, report: Report) -> str:
        """Apply one delivery report; returns what :meth:`DeliveryBook.apply` would."""
        call = apply_call(self.book.keys, report)
        if call is None:
            return "foreign"
        outcome = str((await self._apply(keys=call[0], args=call[1])).decode())
        if outcome == "missing":
            await anyio.to_thread.run_sync(self.book.hold, report)
            return "held"
        return outcome


def _as_dict(report: Report) -> dict[str, Any]:
    return {name: getattr(report, name) for name in Report.__slots__}
