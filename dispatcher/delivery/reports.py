"""Delivery reports (DLRs): parse them and apply them to the per-message records, idempotently.

A report names its message by ``clientId`` (``{campaign}-{batch}-{index}``, see
``dispatcher.sending.payload``), which exists before the send, so a report can be applied even when it
arrives before the send's outcome was recorded. Applying is one Lua script
(``lua/apply_report.lua`` of :mod:`dispatcher.schema`): the same report twice changes nothing, an
older report never replaces a newer one, the ``delivered``/``undelivered`` counters move only on a
change of class (:data:`~dispatcher.schema.names.DELIVERED`, ``UNDELIVERED``), and because a
report proves Instasent accepted the message, a missing or ``unknown`` send record becomes
``sent`` (a terminal record is never touched). Reports for a campaign this Redis does not know
are held and retried later.

Order is by meaning, not by text. A report wins over the one already kept when, in this order:
it is final and the kept one is not (a final status, ``delivered``, ``failed``, ``expired``...,
is never replaced by a non-final one, whatever the time stamps say); it happened later
(``eventAt`` parsed to microseconds, with fractions and offsets); it ranks higher (:data:`RANKS`,
for two reports of the same instant). An ``eventAt`` that cannot be read counts as older than any
real time. The delivery hash keeps ``status|eventAt|code|micros|rank`` per message (readers use
the first three fields; a record of the older three-field form counts as older than any report).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio.to_thread
import orjson
import redis
import redis.asyncio as aioredis

from dispatcher.delivery.batched import BatchedScript
from dispatcher.delivery.held import HeldReports
from dispatcher.errors import InputError
from dispatcher.keys import Keys
from dispatcher.schema.names import DELIVERED, UNDELIVERED
from dispatcher.schema.scripts import script, source
from dispatcher.sending.payload import parse_client_id

#: Tie-break between two reports of the same instant: the higher rank wins. Non-final statuses go
#: by how far along a message is; among final ones, ``delivered`` (the handset has it) ranks top.
#: A status not listed ranks 0, and two such statuses of the same instant go by their names.
RANKS = {"unknown": 1, "sent": 2, "accepted": 3, "buffered": 4, "stop": 5,
         "canceled": 10, "expired": 11, "rejected": 12, "error": 13, "failed": 14, "delivered": 15}
#: ``event_micros`` of a report whose ``eventAt`` is missing or unreadable.
NO_TIME = -1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)

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


def event_micros(event_at: str) -> int:
    """``eventAt`` as Unix microseconds: ISO 8601 with any fraction (cut to µs) and offset (none
    means UTC), or a plain number of Unix seconds; :data:`NO_TIME` when it cannot be read."""
    text = event_at.strip()
    if not text:
        return NO_TIME
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return round(seconds * 1_000_000) if math.isfinite(seconds) else NO_TIME
    try:
        moment = datetime.fromisoformat(text.upper())
    except ValueError:
        return NO_TIME
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICRO


def apply_call(keys: Keys, report: Report) -> tuple[list[str], list[str | int]] | None:
    """The keys and arguments of ``lua/apply_report.lua`` for one report; None when its clientId is not one of ours.

    A ``|`` in the status or ``eventAt`` is dropped: it separates the fields of the kept record.
    """
    where = parse_client_id(report.client_id)
    if where is None:
        return None
    campaign_id, n, index = where
    status, event_at = report.status.replace("|", ""), report.event_at.replace("|", "")
    return ([keys.campaign(campaign_id), keys.delivery(campaign_id, n), keys.ledger(campaign_id, n)],
            [index, status, event_at, report.code, status_class(status), report.instasent_id,
             event_micros(event_at), RANKS.get(status, 0)])


class DeliveryBook:
    """Applies delivery reports to Redis; one instance per process."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis: Any = client
        self.keys = keys
        self._apply = client.register_script(script("apply_report"))
        self.held = HeldReports(client, keys)

    def apply(self, report: Report) -> str:
        """Apply one delivery report; returns what happened (see ``lua/apply_report.lua``), or
        ``held``, ``foreign``."""
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
        self._apply = BatchedScript(client, source("apply_report"))

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
