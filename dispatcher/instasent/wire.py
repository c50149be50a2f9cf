"""Instasent's wire shapes: reading entities, prices and bulk answers, naming endpoints.

Pure functions over decoded JSON, used by :mod:`dispatcher.instasent.client`; a body that is not
what the API documents becomes :class:`OutcomeUnknown` here, never a ``KeyError``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Sequence
from typing import Any

import msgspec
import orjson

from dispatcher.errors import OutcomeUnknown
from dispatcher.instasent.models import BulkIds, BulkResult, Price, RejectedItem, Sms, SmsItem

#: The endpoints a batch uses, by the one name each has everywhere: the client's rate-limit
#: bookkeeping and answer hooks, and the rate-limit lanes that pace them.
SMS_BULK = "POST /sms/bulk"
SMS_LIST = "GET /sms"


def endpoint_name(path: str) -> str:
    """A path with ids replaced, for rate-limit bookkeeping: ``/sms/abc`` -> ``/sms/{id}``."""
    parts = path.strip("/").split("/")
    if len(parts) == 2 and parts[0] in {"sms", "lookup"} and parts[1] != "bulk":
        return f"/{parts[0]}/{{id}}"
    return "/" + "/".join(parts)


def path_part(value: str) -> str:
    """``value`` as one path segment of a URL.

    Raises:
        ValueError: when it could step outside its segment (``/``, ``..``, ``?``, ``#``) or is empty.
    """
    if not value or value in {".", ".."} or "/" in value or "?" in value or "#" in value:
        raise ValueError(f"not an Instasent id: {value!r}")
    return value


def entity(body: Any) -> dict[str, Any]:
    """The one entity of an answer (``{"entity": {...}}`` or the bare object); else OutcomeUnknown."""
    if isinstance(body, dict) and isinstance(body.get("entity"), dict):
        return dict(body["entity"])
    if isinstance(body, dict) and "id" in body:
        return dict(body)
    raise OutcomeUnknown("Instasent's answer has no entity.")


def entities(body: Any) -> list[dict[str, Any]]:
    """The entities of a list answer; else OutcomeUnknown."""
    if isinstance(body, dict) and isinstance(body.get("entities"), list):
        return [e for e in body["entities"] if isinstance(e, dict)]
    if isinstance(body, list):
        return [e for e in body if isinstance(e, dict)]
    raise OutcomeUnknown("Instasent's answer has no list of entities.")


def prices(body: Any) -> list[Price]:
    """Price entries of a price-profile answer, skipping unreadable ones."""
    found = []
    for e in entities(body):
        with contextlib.suppress(KeyError, TypeError, ValueError):
            found.append(Price(country=str(e["country"]).upper(), prefix=str(e.get("prefix", "")),
                                price=float(e["price"]), currency=str(e.get("currency", ""))))
    return found


def match_bulk(body: Any, items: Sequence[SmsItem]) -> BulkResult:
    """Match a bulk answer to the input: by ``clientId`` first, by index for errors without one."""
    client_ids = [item.client_id for item in items]
    known = set(client_ids)
    result = BulkResult()
    for raw in _bulk_entities(body):
        sms = Sms.from_wire(raw) if isinstance(raw, dict) else None
        if sms is not None and sms.client_id in known:
            result.accepted[sms.client_id] = sms
        else:
            result.unmatched.append(raw if isinstance(raw, dict) else {"value": raw})
    _match_errors(body, client_ids, known, result.accepted.keys(), result.rejected, result.unmatched)
    return result


def bulk_ids(body: Any, client_ids: Sequence[str]) -> BulkIds:
    """:func:`match_bulk` reduced to the Instasent id of each accepted ``clientId`` (the sending hot path)."""
    known = set(client_ids)
    result = BulkIds()
    accepted = result.accepted
    for raw in _bulk_entities(body):
        if isinstance(raw, dict):
            client_id = raw.get("clientId")
            if client_id is not None and str(client_id) in known:
                accepted[str(client_id)] = _text(raw.get("id"))
                continue
        result.unmatched.append(raw if isinstance(raw, dict) else {"value": raw})
    _match_errors(body, client_ids, known, accepted.keys(), result.rejected, result.unmatched)
    return result


class _AcceptedEntity(msgspec.Struct):
    """The two fields of an accepted SMS entity the ledger records (the others are skipped unread)."""

    id: str | int | None = None
    clientId: str | int | None = None  # the API spells it so


class _BulkAnswer(msgspec.Struct):
    entities: list[_AcceptedEntity] | None = None
    errors: list[msgspec.Raw] | None = None


_BULK_ANSWER = msgspec.json.Decoder(_BulkAnswer)


def bulk_ids_json(content: bytes, client_ids: Sequence[str]) -> BulkIds:
    """:func:`bulk_ids` over the raw answer body.

    An answer of the usual shape (every entity one of ours, no errors) is decoded straight into
    the two fields read, skipping the rest of each entity unread: decoding every field of 100
    entities was a tenth of a worker's CPU per batch. Any other answer (errors, entities that
    are not ours, unexpected types) takes the general path, with the same result either way.

    Raises:
        OutcomeUnknown: when the body is not JSON or not an object.
    """
    try:
        answer = _BULK_ANSWER.decode(content) if content else None
    except msgspec.MsgspecError:
        answer = None
    entities = (answer.entities or []) if answer is not None else []
    if answer is not None and not answer.errors and all(e.clientId is not None for e in entities):
        accepted = {str(e.clientId): "" if e.id is None else str(e.id) for e in entities}
        if accepted.keys() <= set(client_ids):
            return BulkIds(accepted=accepted)
    try:
        body = orjson.loads(content) if content else {}
    except orjson.JSONDecodeError:
        raise OutcomeUnknown("Instasent answered POST /sms/bulk with a body that is not JSON.") from None
    return bulk_ids(body, client_ids)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _bulk_entities(body: Any) -> list[Any]:
    if not isinstance(body, dict):
        raise OutcomeUnknown("Instasent's bulk answer is not an object; the batch may have been accepted.")
    return body.get("entities") or []


def _match_errors(body: dict[str, Any], client_ids: Sequence[str], known: set[str], accepted: Collection[str],
                  rejected: dict[str, RejectedItem], unmatched: list[dict[str, Any]]) -> None:
    """Match a bulk answer's errors: by ``clientId``, by index for errors without one."""
    for raw in body.get("errors") or []:
        if not isinstance(raw, dict):
            continue
        client_id = raw.get("clientId")
        index = raw.get("index")
        if client_id in (None, "") and isinstance(index, int) and 0 <= index < len(client_ids):
            client_id = client_ids[index]  # by position only when the entry names no clientId
        errors = raw.get("errors") if isinstance(raw.get("errors"), dict) else {"item": [str(raw)]}
        item = RejectedItem(client_id=client_id, to=str(raw.get("to", "")),
                            errors={str(k): [str(m) for m in (v if isinstance(v, list) else [v])]
                                    for k, v in (errors or {}).items()},
                            index=index if isinstance(index, int) else None)
        if client_id in known and client_id not in accepted:
            rejected[str(client_id)] = item
        else:
            unmatched.append(raw)
