"""Opt-outs: a ``stop`` report or an inbound stop word puts the number on a suppression list at
once: that of the account whose campaign it answers (found by the clientId, whatever the account),
or the global list with ``DISPATCHER_GLOBAL_OPTOUT=1`` or when it names no campaign of ours.
Inbound messages are kept per campaign. (A batch skips numbers suppressed since its
preflight: ``sending.attempt`` asks :meth:`~dispatcher.preflight.suppression.SuppressionList.ask`.)
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
import redis

from dispatcher.delivery.reports import Report
from dispatcher.keys import Keys
from dispatcher.preflight import phones
from dispatcher.preflight.suppression import SuppressionList
from dispatcher.schema.names import DEFAULT_ACCOUNT
from dispatcher.sending import payload
from dispatcher.sending.store import blob_of

#: First words of an inbound message that mean "stop texting me" (case and accents ignored).
STOP_WORDS = frozenset({"stop", "stopall", "baja", "unsubscribe", "cancel", "end", "quit", "alto", "parar",
                        "arret", "arrêt", "desuscribir", "fin"})
#: Inbound messages kept per campaign.
MAX_INBOUND = 10_000


def is_stop(text: str) -> bool:
    """True when the first word of ``text`` is a stop word."""
    words = text.strip().lower().split()
    return bool(words) and words[0].strip(".,!¡") in STOP_WORDS


def recipient_of(client: redis.Redis, keys: Keys, client_id: str) -> str | None:
    """The E.164 number a ``clientId`` of ours was sent to, or None."""
    where = payload.parse_client_id(client_id)
    if where is None:
        return None
    campaign_id, n, index = where
    blob = blob_of(client, keys, campaign_id, n)
    if blob is None:
        return None
    messages = payload.decode(blob, n)
    return messages.to[index] if 0 <= index < len(messages) else None


def sender_e164(client: redis.Redis, keys: Keys, report: Report) -> str:
    """The ``from`` of an inbound message in E.164, as the preflight writes numbers, so that it
    matches them on the suppression list; the value as given when it is not a valid number.

    Instasent may give it without its ``+`` (``34612345678``) or, from some networks, with ``00``
    or in national form; a national number is read in the country of the number we texted.
    """
    raw = report.sender.strip()
    recipient = recipient_of(client, keys, report.client_id)
    region = (phones.normalise(recipient).country or None) if recipient else None
    digits = re.sub(r"[\s.\-()/]", "", raw)
    candidates = [raw]
    if digits.isascii() and digits.isdigit():
        candidates.append("+" + (digits[2:] if digits.startswith("00") else digits))
    for candidate in candidates:
        phone = phones.normalise(candidate, region)
        if phone.ok:
            return phone.e164
    return raw


def account_of(client: redis.Redis, keys: Keys, client_id: str) -> str | None:
    """The account of the campaign a ``clientId`` of ours names (``default`` for a campaign stored
    before accounts), or None when it names none that is still here."""
    where = payload.parse_client_id(client_id)
    if where is None:
        return None
    fields = client.hmget(keys.campaign(where[0]), "id", "account")
    if fields[0] is None:
        return None
    account = fields[1]
    return (account.decode() if isinstance(account, bytes) else account) or DEFAULT_ACCOUNT


def handle_optout(client: redis.Redis, keys: Keys, report: Report, global_optout: bool = False) -> str | None:
    """Suppress the number behind a ``stop`` report or an inbound stop word; returns it, else None.

    It goes on the list of the account whose campaign the report answers; on the global list
    with ``global_optout`` (``DISPATCHER_GLOBAL_OPTOUT``), or when the report names no campaign.
    """
    if report.is_inbound:
        wants_out = is_stop(report.message or "") or report.status == "stop"
        number = sender_e164(client, keys, report) if wants_out else None
    elif report.status == "stop":
        number = recipient_of(client, keys, report.client_id)
    else:
        number = None
    if number:
        account = None if global_optout else account_of(client, keys, report.client_id)
        SuppressionList(client, keys, account=account).add([number])
    return number


def keep_inbound(client: redis.Redis, keys: Keys, report: Report) -> str:
    """Store an inbound message with its campaign (found by ``clientId``); returns the campaign id or ``""``."""
    where = payload.parse_client_id(report.client_id)
    campaign_id = where[0] if where else ""
    key = keys.inbound(campaign_id) if campaign_id else keys.inbound_unmatched()
    entry = {"from": report.sender, "to": report.to, "message": report.message, "clientId": report.client_id,
             "id": report.instasent_id, "eventAt": report.event_at, "receivedAt": time.time(),
             "stop": is_stop(report.message or "") or report.status == "stop"}
    pipe = client.pipeline()
    pipe.rpush(key, orjson.dumps(entry))
    pipe.ltrim(key, -MAX_INBOUND, -1)
    pipe.execute()
    return campaign_id


def inbound_messages(client: redis.Redis, keys: Keys, campaign_id: str) -> list[dict[str, Any]]:
    """The inbound messages kept for campaign ``campaign_id``, oldest first."""
    return [orjson.loads(x) for x in client.lrange(keys.inbound(campaign_id), 0, -1)]


def unmatched_messages(client: redis.Redis, keys: Keys, limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` inbound messages that name no campaign (no ``clientId``), oldest first."""
    return [orjson.loads(x) for x in client.lrange(keys.inbound_unmatched(), -limit, -1)] if limit > 0 else []

