"""Value objects exchanged with Instasent's Transactional API (wire names in ``to_wire``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


def _str(value: Any) -> str:
    """A wire value as text; a missing or null one is empty."""
    return "" if value is None else str(value)


def _number(value: Any, default: float) -> float:
    """A wire number (possibly sent as a string); ``default`` when missing, null or unreadable."""
    if value is None or value == "" or isinstance(value, bool):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


@dataclass(frozen=True, slots=True)
class SmsItem:
    """One SMS to send. ``client_id`` is our deterministic reference (at most 40 characters)."""

    sender: str
    to: str
    text: str
    client_id: str
    allow_unicode: bool = False

    def to_wire(self) -> dict[str, Any]:
        """The item as the API spells it."""
        return wire_item(self.sender, self.to, self.text, self.client_id, self.allow_unicode)


def wire_item(sender: str, to: str, text: str, client_id: str, allow_unicode: bool = False) -> dict[str, Any]:
    """One bulk item as the API spells it (what :meth:`SmsItem.to_wire` returns, without the object)."""
    body: dict[str, Any] = {"from": sender, "to": to, "text": text, "clientId": client_id}
    if allow_unicode:
        body["allowUnicode"] = True
    return body


@dataclass(frozen=True, slots=True)
class Sms:
    """An SMS entity as Instasent returns it. ``price`` is in the account currency per message."""

    id: str
    client_id: str | None
    to: str
    status: str
    text: str = ""
    sender: str = ""
    encoding: str = ""
    parts: int = 1
    price: float = 0.0
    created_at: str = ""

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Sms:
        """Parse an SMS entity, ignoring unknown fields."""
        return cls(
            id=_str(data.get("id")),
            client_id=None if data.get("clientId") is None else _str(data.get("clientId")),
            to=_str(data.get("to")),
            status=_str(data.get("status")),
            text=_str(data.get("text")),
            sender=_str(data.get("from")),
            encoding=_str(data.get("encoding")),
            parts=int(_number(data.get("parts"), 1)) or 1,
            price=_number(data.get("price"), 0.0),
            created_at=_str(data.get("createdAt")),
        )


@dataclass(frozen=True, slots=True)
class RejectedItem:
    """A bulk item Instasent refused, with its per-field error messages."""

    client_id: str | None
    to: str
    errors: dict[str, list[str]]
    index: int | None = None

    @property
    def reason(self) -> str:
        """All field errors as one line, e.g. ``to: invalid number; text: empty``."""
        return "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(self.errors.items())) or "rejected"

    @property
    def already_used(self) -> bool:
        """True when the only complaint is a reused ``clientId``: proof of an earlier acceptance."""
        msgs = self.errors.get("clientId", [])
        return len(self.errors) == 1 and any("already used" in m.lower() for m in msgs)


@dataclass(frozen=True, slots=True)
class BulkResult:
    """Outcome of one ``POST /sms/bulk``, keyed by ``clientId``.

    ``unmatched`` holds response entries that could not be matched to an input item.
    """

    accepted: dict[str, Sms] = field(default_factory=dict)
    rejected: dict[str, RejectedItem] = field(default_factory=dict)
    unmatched: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BulkIds:
    """A bulk answer reduced to what the ledger records: the Instasent id of each accepted
    ``clientId`` (no :class:`Sms` per message), the rejected items, and entries matching no input."""

    accepted: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, RejectedItem] = field(default_factory=dict)
    unmatched: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Lookup:
    """An HLR lookup. ``status`` is ``valid``, ``invalid`` or ``unreachable``."""

    id: str
    to: str
    status: str
    country: str = ""
    mcc: str = ""
    mnc: str = ""
    network: str = ""
    ported: bool = False
    price: float = 0.0
    created_at: str = ""

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Lookup:
        """Parse a lookup entity, ignoring unknown fields."""
        return cls(
            id=_str(data.get("id")),
            to=_str(data.get("to")),
            status=_str(data.get("status")),
            country=_str(data.get("country")),
            mcc=_str(data.get("mcc")),
            mnc=_str(data.get("mnc")),
            network=_str(data.get("network")),
            ported=data.get("ported") in (True, 1, "true", "True", "1"),
            price=_number(data.get("price"), 0.0),
            created_at=_str(data.get("createdAt")),
        )


@dataclass(frozen=True, slots=True)
class Account:
    """The organisation's balance: ``available`` in ``currency``; ``organization`` is the id (else the
    name) of the organization the token belongs to, when the answer names one (None otherwise)."""

    available: float
    currency: str
    organization: str | None = None


@dataclass(frozen=True, slots=True)
class Price:
    """One price-profile entry: ``price`` per message part (or per lookup) to ``country``."""

    country: str
    prefix: str
    price: float
    currency: str


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """The latest ``X-RateLimit-*`` headers: ``reset`` is a Unix time in seconds."""

    limit: int
    remaining: int
    reset: float
