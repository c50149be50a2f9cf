"""The per-message record: one short string per message, stored in the batch's ledger hash.

A record is ``{code}|{attempts}|{detail}``: the detail is the Instasent id for ``sent`` and the
reason for ``rejected``, ``failed`` and the others. A message with no record is ``pending``. Once
a record is terminal it is never overwritten (the store's Lua scripts enforce it), which is what
makes every message end in exactly one terminal state.
"""

from __future__ import annotations

from dataclasses import dataclass

#: code -> status name. ``unknown`` is the only non-terminal record.
CODES = {
    "s": "sent",
    "r": "rejected",
    "f": "failed",
    "u": "unknown",
    "c": "cancelled",
    "e": "expired",
    "x": "suppressed",
}
#: status name -> code.
STATUS_CODES = {name: code for code, name in CODES.items()}
#: Codes no later outcome may replace.
TERMINAL_CODES = frozenset("srfcex")
#: Every status a message can be in, in report order.
STATUSES = ("pending", *CODES.values())

#: Longest detail kept (characters); longer reasons are cut.
MAX_DETAIL = 120


@dataclass(frozen=True, slots=True)
class Record:
    """One message's outcome."""

    status: str
    attempts: int = 0
    detail: str = ""

    @property
    def instasent_id(self) -> str:
        """The Instasent id for a sent message, else empty."""
        return self.detail if self.status == "sent" else ""

    @property
    def error(self) -> str:
        """The reason for a message that was not sent, else empty."""
        return "" if self.status in ("sent", "pending") else self.detail


def encode(status: str, attempts: int, detail: str = "") -> str:
    """Encode a record; ``status`` is a name from ``CODES``."""
    clean = detail.replace("\n", " ")[:MAX_DETAIL]
    return f"{STATUS_CODES[status]}|{attempts}|{clean}"


def decode(raw: str | bytes | None) -> Record:
    """Decode a stored record; ``None`` is a pending message."""
    if raw is None:
        return Record("pending")
    text = raw.decode() if isinstance(raw, bytes) else raw
    code, _, rest = text.partition("|")
    attempts, _, detail = rest.partition("|")
    return Record(CODES.get(code, "unknown"), int(attempts or 0), detail)
