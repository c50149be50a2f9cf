"""The campaign report a person reads: text and sender, delivery rates, undelivered messages by
report code, the actual cost beside the estimate, a table per country and the timeline with its
pauses (``GET /api/campaigns/{cid}/summary``, ``dispatcher report ID --summary``).

Money is summed in :class:`~decimal.Decimal` from each message's stored price (see
:mod:`dispatcher.money`) and given as decimal strings: totals in the currency's exponent, unit
prices with up to 4 decimals. The actual cost counts the messages Instasent accepted (``sent``):
their parts times the price per part, which is the message's stored price.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from dispatcher import money
from dispatcher.schema.names import DELIVERED, UNDELIVERED
from dispatcher.sending import explain, ledger
from dispatcher.sending.store import CampaignInfo, CampaignStore

#: Words for an undelivered report, by status (Instasent sends a code, not a description).
REASONS = {
    "failed": "the network could not deliver it (number off, unknown or barred)",
    "expired": "no delivery receipt before the message expired",
    "rejected": "the operator rejected it",
    "error": "an error at the operator",
    "canceled": "cancelled before delivery",
}


def reason_of(status: str, code: str) -> str:
    """A plain phrase for an undelivered report of ``status`` with ``code``."""
    phrase = REASONS.get(status, status or "unknown")
    return f"{phrase} (code {code})" if code not in ("", "0") else phrase


@dataclass(slots=True)
class _Country:
    messages: int = 0
    sent: int = 0
    parts: int = 0
    sent_parts: int = 0
    estimated: Decimal = field(default_factory=Decimal)
    actual: Decimal = field(default_factory=Decimal)
    unit: Decimal | None = None
    delivered: int = 0
    undelivered: int = 0


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def campaign_summary(store: CampaignStore, campaign_id: str) -> dict[str, Any]:
    """The report object of campaign ``campaign_id`` (its shape is in the module docstring and the
    console's API contract). Reads every batch once.

    Raises:
        UnknownItem: when no campaign has that id.
    """
    info = store.get(campaign_id)
    countries: dict[str, _Country] = {}
    undelivered: Counter[tuple[str, str]] = Counter()
    for _, messages, records, deliveries in store.iter_raw_batches(campaign_id, 200, deliveries=True):
        for i in range(len(messages)):
            country = countries.setdefault(messages.country[i] or "??", _Country())
            parts, price = int(messages.parts[i]), money.dec(messages.price[i])
            country.messages += 1
            country.parts += parts
            country.estimated += price
            if country.unit is None and parts:
                country.unit = price / parts
            state = ledger.fields(records.get(str(i).encode()))[0]
            if state == "sent":
                country.sent += 1
                country.sent_parts += parts
                country.actual += price
            report = deliveries.get(str(i).encode())
            if report is None:
                continue
            status, _, code = [*report.decode().split("|"), "", ""][:3]
            status = status.lower()
            if status in DELIVERED:
                country.delivered += 1
            elif status in UNDELIVERED:
                country.undelivered += 1
                undelivered[(status, code)] += 1
    return _assemble(store, info, countries, undelivered)


def _assemble(store: CampaignStore, info: CampaignInfo, countries: dict[str, _Country],
              undelivered: Counter[tuple[str, str]]) -> dict[str, Any]:
    currency = info.currency
    counts = info.counts
    delivered, failed_reports = info.delivery.get("delivered", 0), info.delivery.get("undelivered", 0)
    reported = delivered + failed_reports
    actual = sum((c.actual for c in countries.values()), Decimal(0))
    return {
        "id": info.id, "name": info.name, "state": info.state, "reason": info.reason,
        "text": info.options.get("text"), "text_column": info.options.get("text_column"),
        "sender": info.options.get("sender"), "schedule": info.schedule or None,
        "account": info.account, "organization": info.organization,
        "currency": currency, "currency_exponent": money.exponent(currency),
        "totals": {"messages": info.total, **{k: counts.get(k, 0) for k in
                                              ("sent", "failed", "rejected", "cancelled", "unknown", "suppressed",
                                               "expired", "pending")},
                   "parts": sum(c.parts for c in countries.values()),
                   "sent_parts": sum(c.sent_parts for c in countries.values()),
                   "delivered": delivered, "undelivered": failed_reports, "reported": reported},
        "delivery_rate": {"of_reported": _rate(delivered, reported),
                          "of_sent": _rate(delivered, counts.get("sent", 0))},
        "cost": {"estimated": money.total(info.cost, currency), "actual": money.total(actual, currency),
                 "currency": currency},
        "undelivered": [{"status": status, "code": code, "reason": reason_of(status, code), "count": n}
                        for (status, code), n in undelivered.most_common()],
        "countries": [{"country": name, "messages": c.messages, "sent": c.sent, "parts": c.parts,
                       "unit_price": money.unit(c.unit, currency) if c.unit is not None else None,
                       "estimated_cost": money.total(c.estimated, currency),
                       "actual_cost": money.total(c.actual, currency), "delivered": c.delivered,
                       "undelivered": c.undelivered, "delivery_rate": _rate(c.delivered, c.delivered + c.undelivered)}
                      for name, c in sorted(countries.items(), key=lambda kv: (-kv[1].messages, kv[0]))],
        "timeline": timeline(store, info),
    }


def timeline(store: CampaignStore, info: CampaignInfo) -> dict[str, Any]:
    """``created_at``, ``started_at``, ``finished_at`` (Unix s or None), the ``events`` (each with
    ``at``, ``at_iso`` in UTC, ``kind``, ``by``, ``reason``) and the ``pauses`` they make (``from``,
    ``to`` — None while still paused —, ``by``, ``reason``). A pause the dispatcher made itself
    (no event recorded: out of balance, failures in a row) is shown from the campaign's last change."""
    events: list[dict[str, Any]] = [{"at": info.created_at, "kind": "created", "by": "", "reason": ""}]
    if info.started_at:
        events.append({"at": info.started_at, "kind": "started", "by": "", "reason": ""})
    events += store.events(info.id)
    if info.state == "paused" and not any(e["kind"] == "paused" for e in events[-1:]) and info.updated_at:
        events.append({"at": info.updated_at, "kind": "paused", "by": "dispatcher", "reason": info.reason})
    if (info.finished_at and info.state in ("completed", "cancelled", "failed")
            and not any(e["kind"] == info.state for e in events)):
        events.append({"at": info.finished_at, "kind": str(info.state), "by": "", "reason": info.reason})
    events.sort(key=lambda e: float(e["at"]))
    pauses: list[dict[str, Any]] = []
    for event in events:
        event["at_iso"] = explain.iso(float(event["at"]))
        if event["kind"] == "paused":
            pauses.append({"from": event["at"], "to": None, "by": event["by"], "reason": event["reason"]})
        elif event["kind"] in ("resumed", "cancelled", "completed", "failed") and pauses and pauses[-1]["to"] is None:
            pauses[-1]["to"] = event["at"]
    return {"created_at": info.created_at, "started_at": info.started_at, "finished_at": info.finished_at,
            "events": events, "pauses": pauses}
