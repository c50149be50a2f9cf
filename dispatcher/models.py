"""Value objects exchanged with Instasent's Transactional API (wire names in ``to_wire``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
        body: dict[str, Any] = {"from": self.sender, "to": self.to, "text": self.text, "clientId": self.client_id}
        if self.allow_unicode:
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
            id=str(data.get("id", "")),
            client_id=data.get("clientId"),
            to=str(data.get("to", "")),
            status=str(data.get("status", "")),
            text=str(data.get("text", "")),
            sender=str(data.get("from", "")),
            encoding=str(data.get("encoding", "")),
            parts=int(data.get("parts") or 1),
            price=float(data.get("price") or 0.0),
            created_at=str(data.get("createdAt", "")),
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
            id=str(data.get("id", "")),
            to=str(data.get("to", "")),
            status=str(data.get("status", "")),
            country=str(data.get("country") or ""),
            mcc=str(data.get("mcc") or ""),
            mnc=str(data.get("mnc") or ""),
            network=str(data.get("network") or ""),
            ported=bool(data.get("ported", False)),
            price=float(data.get("price") or 0.0),
            created_at=str(data.get("createdAt", "")),
        )


@dataclass(frozen=True, slots=True)
class Account:
    """The organisation's balance: ``available`` in ``currency``."""

    available: float
    currency: str


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
