"""Every name the Redis data shares between Python and Lua, defined once.

The Lua scripts (``lua/*.lua``) get these through the prelude that :mod:`dispatcher.schema.scripts`
generates from this module: record codes (``CODE``, ``TERMINAL``, ``COUNTER``), batch states
(``ST``), campaign states (``S``, ``SENDING``, ``ALLOWED``) and delivery classes (``DCLASS``,
``DCOUNTER``). The hash fields the scripts read and write are listed here too, so a test can hold
every script to them. Key names are :class:`dispatcher.keys.Keys`' alone.

Campaign lifecycle::

    queued ──► running ──► completed
      │          │  ▲           ▲
      │          ▼  │ resume    │ (its last batch settled while paused)
      │        paused ──────────┘
      ▼          │
    cancelled ◄──┘ (from queued, running or paused)
    failed    ◄── queued, running or paused (401: configuration error); resume retries it
"""

from __future__ import annotations

from enum import StrEnum

# -- per-message records (see dispatcher.sending.ledger) --------------------------------------------
#: Record code (the first character of a ledger value) -> status name. ``unknown`` is the only
#: non-terminal record; a message with no record is ``pending``.
CODES = {
    "s": "sent",
    "r": "rejected",
    "f": "failed",
    "u": "unknown",
    "c": "cancelled",
    "e": "expired",
    "x": "suppressed",
}
#: Status name -> record code.
STATUS_CODES = {name: code for code, name in CODES.items()}
#: Codes no later outcome may replace.
TERMINAL_CODES = frozenset("srfcex")
#: Every status a message can be in, in report order.
STATUSES = ("pending", *CODES.values())
#: Status name -> the campaign hash's counter of messages with that record.
COUNTERS = {name: f"n:{name}" for name in CODES.values()}


# -- campaigns ----------------------------------------------------------------------------------------
class State(StrEnum):
    """Where a campaign stands (the ``state`` field of its hash)."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


#: state -> states it may move to.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.QUEUED: frozenset({State.RUNNING, State.PAUSED, State.CANCELLED, State.FAILED, State.COMPLETED}),
    State.RUNNING: frozenset({State.PAUSED, State.COMPLETED, State.CANCELLED, State.FAILED}),
    State.PAUSED: frozenset({State.RUNNING, State.COMPLETED, State.CANCELLED, State.FAILED}),
    State.FAILED: frozenset({State.RUNNING, State.CANCELLED}),
    State.COMPLETED: frozenset(),
    State.CANCELLED: frozenset(),
}
#: States in which batches are sent.
SENDING = frozenset({State.QUEUED, State.RUNNING})
#: States a campaign never leaves.
FINAL = frozenset({State.COMPLETED, State.CANCELLED})


# -- batches ------------------------------------------------------------------------------------------
class BatchState(StrEnum):
    """Where one batch stands (the ``st`` field of its hash)."""

    #: Not being sent: never tried, or waiting for a retry.
    PENDING = "p"
    #: Claimed by a worker whose lease has not expired (a POST may be in flight).
    IN_FLIGHT = "i"
    #: Some messages' outcome is unknown: reconcile by clientId before sending again.
    UNKNOWN = "u"
    #: Every message has a terminal record.
    DONE = "d"


# -- delivery reports (see dispatcher.delivery.reports) -----------------------------------------------
#: Final delivery statuses, by counter class; the others (sent, accepted, buffered, unknown) are not final.
DELIVERED = frozenset({"delivered"})
UNDELIVERED = frozenset({"failed", "expired", "rejected", "error", "canceled"})
#: Delivery class (``d`` delivered, ``u`` a final failure) -> the campaign hash's counter of that class.
DELIVERY_COUNTERS = {"d": "d:delivered", "u": "d:undelivered"}
#: Every status Instasent documents for a delivery report (lowercase, as documented); any other is refused.
REPORT_STATUSES = frozenset({"sent", "accepted", "buffered", "delivered", "error", "failed", "expired",
                             "canceled", "rejected", "unknown", "stop"})
#: Why a report was refused -> the field of the telemetry hash (``Keys.telemetry``) that counts them:
#: its Instasent id is not the one recorded for its clientId (or its message was recorded as not
#: sent), its status is not one Instasent documents, its sender's address is not allowed, or it
#: was held and no send ever matched it (dropped at the hold's age or size limit).
REFUSED_REPORTS = {"mismatch": "dlr:refused:mismatch", "status": "dlr:refused:status",
                   "source": "dlr:refused:source", "expired": "dlr:refused:expired"}

# -- messages -----------------------------------------------------------------------------------------
#: Each column of a campaign's messages (a field of ``dispatcher.sending.payload.BatchMessages``), in
#: the stored order: the first stored form is these columns as lists, by position, so the order
#: never changes.
MESSAGE_FIELDS = ("row", "to", "text", "sender", "parts", "unicode", "price", "country")
#: The columns of the preflight's messages, in order: ``price`` (parts x the country's price per
#: part) comes last because the preflight adds it last.
MESSAGE_COLUMNS = (*(column for column in MESSAGE_FIELDS if column != "price"), "price")

# -- accounts -----------------------------------------------------------------------------------------
#: The account ``INSTASENT_TOKEN`` stands for, and that of every campaign stored before accounts existed.
DEFAULT_ACCOUNT = "default"

# -- hash fields --------------------------------------------------------------------------------------
#: Fields of a batch's hash (``Keys.batch``). Only short values, so Redis keeps the hash compact.
BATCH_FIELDS = {
    "st": "BatchState",
    "size": "messages in the batch",
    "att": "POSTs made",
    "fails": "failed attempts",
    "rc": "'1' when the batch must be reconciled before it is sent again",
    "settled": "'1' once counted in the campaign's settled batches",
    "inc": "era (run_id, and the replid it was promoted from) of the Redis that last claimed or stored it",
    "tz": "time-zone key of its messages ('' or absent: none)",
    "lease": "Unix µs when the holder's lease runs out",
    "tok": "the holder's fencing token",
    "fence": "counter the tokens are made from",
    "tu": "'a:b', the batches its last record reserved",
    "ut": "Unix s of its last record",
    "err": "the last error recorded",
    "parked": "'1' while it waits for a send window",
    "wd": "Unix s when the watchdog last drove it again",
    "p": "its compressed messages, in batches stored before they had a key of their own",
}
#: Fields of a campaign's hash (``Keys.campaign``), besides the counters of :data:`COUNTERS` and
#: :data:`DELIVERY_COUNTERS`.
CAMPAIGN_FIELDS = {
    "id": "campaign id", "name": "its name", "state": "State", "reason": "why it is in that state",
    "total": "messages", "batches": "batches stored", "enqueued": "batches reserved for the queue",
    "settled": "batches settled", "window": "queue window (batches)", "parked": "batches parked",
    "waiting": "messages of parked batches", "consec_fail": "consecutive failed attempts",
    "created_at": "Unix s", "started_at": "Unix s", "finished_at": "Unix s", "updated_at": "Unix s",
    "cost": "estimated cost", "currency": "its currency", "options": "JSON", "preflight": "JSON summary",
    "send_window": "JSON", "expires_at": "Unix s", "supp_v": "suppression version its preflight saw",
    "loading": "'1' while its list is being stored", "load": "JSON of how to resume loading",
    "loaded_row": "last spreadsheet row stored", "rows_read": "rows read", "expected": "messages expected",
    "wd_at": "Unix s of the watchdog's last drive", "wd_batches": "batches it drove",
    "era": "the Redis era (after a promotion) its claims last saw", "era_at": "Unix µs that era was first seen",
    "priority": "low, normal or high: its weight in its lane's fair share",
    "window_base": "queue window (batches) the campaign would keep alone in its lane",
    "account": "the account it sends for (absent: default)",
    "organization": "that account's organization at submit time ('' or absent: unknown)",
}
#: Fields of a schedule's hash (``Keys.schedule``).
SCHEDULE_FIELDS = {
    "def": "JSON definition", "since": "Unix s it was saved", "last_due": "Unix s of the last due time",
    "last_campaign": "its current campaign", "queued_campaign": "a held campaign, as older versions kept it",
}
