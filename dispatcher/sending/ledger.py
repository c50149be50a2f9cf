"""The per-message record: one short string per message, stored in the batch's ledger hash.

A record is ``{code}|{attempts}|{detail}``, the code from :data:`dispatcher.schema.names.CODES`:
the detail is the Instasent id for ``sent`` and the reason for ``rejected``, ``failed`` and the
others. A message with no record is ``pending``.
A sent record whose id is lowercase hexadecimal (Instasent's ids are 24 hex digits) is kept packed,
``s{attempts}:{id as unpadded base64}`` (19 bytes instead of 28: the ledger is most of what a
sent campaign keeps in Redis); readers accept both forms, and the Lua scripts read only the code,
the first character. Once
a record is terminal it is never overwritten (the store's Lua scripts enforce it), which is what
makes every message end in exactly one terminal state.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from dispatcher.schema.names import CODES, STATUS_CODES

#: Longest detail kept (characters); longer reasons are cut.
MAX_DETAIL = 120
#: An id that packs without loss: lowercase hexadecimal, whole bytes.
_HEX_ID = re.compile(r"(?:[0-9a-f]{2})+")
#: The padding a packed id's base64 lost, by its length modulo 4.
_PAD = ("", "===", "==", "=")


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
    if status == "sent" and _HEX_ID.fullmatch(clean):
        return f"s{attempts}:{binascii.b2a_base64(bytes.fromhex(clean), newline=False).rstrip(b'=').decode()}"
    return f"{STATUS_CODES[status]}|{attempts}|{clean}"


def encode_sent(attempts: int, instasent_ids: Sequence[str]) -> list[str]:
    """``[encode("sent", attempts, i) for i in instasent_ids]``, in one step when every id has the
    same hexadecimal length in whole base64 quanta (Instasent's 24 characters): one conversion of
    the joined ids instead of one per message, which was 5-10 % of a worker's time per batch."""
    width = len(instasent_ids[0]) if instasent_ids else 0
    if 0 < width <= MAX_DETAIL and width % 6 == 0 and all(len(i) == width for i in instasent_ids):
        joined = "".join(instasent_ids)
        try:
            raw = bytes.fromhex(joined)
        except ValueError:
            raw = b""
        # Lower-case hexadecimal (what ``encode`` packs) exactly when it reads back the same: fromhex
        # also takes upper case and spaces. Each id is then hexadecimal too (same even length).
        if raw.hex() == joined:
            packed = binascii.b2a_base64(raw, newline=False).decode()
            step, prefix = width // 6 * 4, f"s{attempts}:"
            return [prefix + packed[k:k + step] for k in range(0, len(packed), step)]
    return [encode("sent", attempts, i) for i in instasent_ids]


def decode(raw: str | bytes | None) -> Record:
    """Decode a stored record; ``None`` is a pending message."""
    return Record(*fields(raw))


def fields(raw: str | bytes | None) -> tuple[str, int, str]:
    """``(status, attempts, detail)`` of a stored record, as :func:`decode` reads it, without
    building a :class:`Record` (a report reads millions)."""
    if raw is None:
        return "pending", 0, ""
    text = raw.decode() if isinstance(raw, bytes) else raw
    if text[1:2] != "|":  # packed: s{attempts}:{base64 id}
        attempts, _, packed = text[1:].partition(":")
        instasent_id = binascii.a2b_base64(packed + _PAD[len(packed) % 4]).hex()
        return CODES.get(text[:1], "unknown"), int(attempts or 0), instasent_id
    code, _, rest = text.partition("|")
    attempts, _, detail = rest.partition("|")
    return CODES.get(code, "unknown"), int(attempts or 0), detail
