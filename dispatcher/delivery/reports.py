"""Delivery reports (DLRs): parse them, check them and apply them to the per-message records, idempotently.

A report names its message by ``clientId`` (``{campaign}-{batch}-{index}``, see
``dispatcher.sending.payload``) and its Instasent ``id``. It is applied only to a message the
ledger records as sent under that same id. Applying is one Lua script (``lua/apply_report.lua`` of
:mod:`dispatcher.schema`), which refuses and counts a report whose id differs from the recorded one
(or whose message was recorded as not sent: rejected, failed, expired...), never writes a send
record itself, and holds (``dispatcher.delivery.held``) a report whose message has no send record
yet, or whose campaign this Redis does not know, to match it once the send is recorded. So a
forged report can neither change a message that was sent nor mark one sent that was not. The same
report twice changes nothing, an older report never replaces a newer one, and the
``delivered``/``undelivered`` counters move only on a change of class
(:data:`~dispatcher.schema.names.DELIVERED`, ``UNDELIVERED``).

A status must be one of those Instasent documents (:data:`~dispatcher.schema.names.REPORT_STATUSES`),
compared without regard to case: the documentation writes them in lowercase, a status means the
same in any case, and the receiver has always accepted any case; any other word (``DELIVRD``) is
refused before anything is applied, because a status nothing can class would count as neither
delivered nor undelivered.

Order is by meaning, not by text. A report wins over the one already kept when, in this order:
it is final and the kept one is not (a final status, ``delivered``, ``failed``, ``expired``...,
is never replaced by a non-final one, whatever the time stamps say); it happened later
(``eventAt`` parsed to microseconds, with fractions and offsets); it ranks higher (:data:`RANKS`,
for two reports of the same instant). An ``eventAt`` that cannot be read counts as older than any
real time. The delivery hash keeps ``status|eventAt|code|micros|rank`` per message, plus ``|id``
when the send record has no id (readers use the first three fields; a record of the older
three-field form counts as older than any report).
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
from dispatcher.delivery.replicated import barrier
from dispatcher.errors import InputError
from dispatcher.keys import Keys
from dispatcher.schema.names import DELIVERED, REPORT_STATUSES, UNDELIVERED
from dispatcher.schema.scripts import script, source
from dispatcher.sending import ledger
from dispatcher.sending.payload import parse_client_id

#: Tie-break between two reports of the same instant: the higher rank wins. Non-final statuses go
#: by how far along a message is; among final ones, ``delivered`` (the handset has it) ranks top.
#: A status not listed ranks 0, and two such statuses of the same instant go by their names.
RANKS = {"unknown": 1, "sent": 2, "accepted": 3, "buffered": 4, "stop": 5,
         "canceled": 10, "expired": 11, "rejected": 12, "error": 13, "failed": 14, "delivered": 15}
#: Outcomes of ``lua/apply_report.lua`` after which a report is held: its campaign is not known
#: here, or its message has no send record yet.
HOLD = frozenset({"missing", "unsent"})
#: ``event_micros`` of a report whose ``eventAt`` is missing or unreadable.
NO_TIME = -1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


class UnknownStatus(InputError):
    """A delivery report's status is not one that Instasent documents (the receiver counts these)."""


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
        UnknownStatus: when a delivery report's status is not one Instasent documents.
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
    if message is None and str(status).lower() not in REPORT_STATUSES:
        raise UnknownStatus(f"{str(status)[:40]!r} is not a delivery status Instasent documents: "
                            f"expected one of {', '.join(sorted(REPORT_STATUSES))}")
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
    The id goes in both forms a send record may keep it in (``dispatcher.sending.ledger``), so the
    script compares it with the record as it is, without decoding.
    """
    where = parse_client_id(report.client_id)
    if where is None:
        return None
    campaign_id, n, index = where
    status, event_at = report.status.replace("|", ""), report.event_at.replace("|", "")
    recorded = report.instasent_id.replace("\n", " ")[:ledger.MAX_DETAIL]  # as ledger.encode keeps a detail
    as_packed = ledger.encode("sent", 0, recorded)
    packed = as_packed.removeprefix("s0:") if as_packed.startswith("s0:") else ""
    return ([keys.campaign(campaign_id), keys.delivery(campaign_id, n), keys.ledger(campaign_id, n),
             keys.telemetry()],
            [index, status, event_at, report.code, status_class(status), recorded, event_micros(event_at),
             RANKS.get(status, 0), packed])


class DeliveryBook:
    """Applies delivery reports to Redis; one instance per process."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis: Any = client
        self.keys = keys
        self._apply = client.register_script(script("apply_report"))
        self.held = HeldReports(client, keys)

    def apply(self, report: Report) -> str:
        """Apply one delivery report; returns what happened (see ``lua/apply_report.lua``: ``applied``,
        ``duplicate``, ``stale`` or ``mismatch``), or ``held``, ``foreign``.

        Raises:
            redis.exceptions.RedisError: when Redis cannot be reached.
        """
        call = apply_call(self.keys, report)
        if call is None:
            return "foreign"
        outcome = str(self._apply(keys=call[0], args=call[1]).decode())
        if outcome in HOLD:
            self.hold(report)
            return "held"
        return outcome

    def hold(self, report: Report) -> None:
        """Keep a report that cannot be matched yet, to match it when it can be (see ``held``).

        The id is part of the field: a report carrying another id cannot replace a held one.
        """
        field = f"{report.client_id}|{report.status}|{report.event_at}|{report.instasent_id}"
        self.held.hold(field, orjson.dumps(_as_dict(report)))

    def retry_held(self) -> int:
        """Try the held reports again, dropping expired ones; returns how many were applied (taken
        out of the hold and applied, or found already applied)."""
        outcomes = self.held.retry(lambda blob: apply_call(self.keys, Report(**orjson.loads(blob))))
        return outcomes["applied"] + outcomes["duplicate"] + outcomes["stale"]


class AsyncDeliveryBook:
    """:meth:`DeliveryBook.apply` on an asyncio client, for the receiver's event loop.

    The same script on the same keys, pipelined with the other reports of the same event-loop
    turn (``dispatcher.delivery.batched``); the rare hold of a report that cannot be matched yet
    goes through ``book`` (blocking) in a worker thread. With ``replicas``, a report returns only
    once that many replicas have its writes (``dispatcher.delivery.replicated``).
    """

    def __init__(self, client: aioredis.Redis, book: DeliveryBook, replicas: int = 0, wait_s: float = 0.5) -> None:
        self.book = book
        self.replicas, self.wait_s = replicas, wait_s
        self._apply = BatchedScript(client, source("apply_report"), replicas, wait_s)

    async def apply(self, report: Report) -> str:
        """Apply one delivery report; returns what :meth:`DeliveryBook.apply` would.

        Raises:
            NotReplicated: when too few replicas acknowledged its writes in time (see the class).
            redis.exceptions.RedisError: when Redis cannot be reached.
        """
        call = apply_call(self.book.keys, report)
        if call is None:
            return "foreign"
        outcome = str((await self._apply(keys=call[0], args=call[1])).decode())
        if outcome in HOLD:
            await anyio.to_thread.run_sync(self._hold, report)
            return "held"
        return outcome

    def _hold(self, report: Report) -> None:
        self.book.hold(report)
        barrier(self.book.redis, self.book.keys, self.replicas, self.wait_s)


def _as_dict(report: Report) -> dict[str, Any]:
    return {name: getattr(report, name) for name in Report.__slots__}
