"""Validation of one SMS item (``POST /sms`` or one element of ``POST /sms/bulk``).

Every field is checked, so an item reports all its problems at once, as ``{field: [message]}``:

- ``to``: a string ``+`` then 7 to 15 digits, not starting with 0, with a geographic calling code,
  to a country that has a price;
- ``from``: a string of 1 to 11 characters;
- ``text``: a non-empty string; outside GSM-7 it needs ``allowUnicode: true``;
- ``clientId``: absent, null, or a string of 1 to 40 characters;
- ``allowUnicode``: absent, null or a boolean.

Uniqueness of ``clientId`` depends on what was accepted before, so the store checks it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dispatcher.dev.sandbox.regions import region_for_e164
from dispatcher.instasent.segments import count_segments

#: Longest ``from`` (alphanumeric sender), and longest ``clientId``.
MAX_SENDER = 11
MAX_CLIENT_ID = 40

E164 = re.compile(r"\+[1-9][0-9]{6,14}")

TO_FORMAT = "must be an E.164 number: + and 7 to 15 digits"
TO_UNKNOWN_CODE = "unknown country calling code"
TO_UNPRICED = "no price for destination country {}"
FROM_INVALID = f"must be a string of 1 to {MAX_SENDER} characters"
TEXT_INVALID = "must be a non-empty string"
CLIENT_ID_INVALID = f"must be a string of 1 to {MAX_CLIENT_ID} characters"
ALLOW_UNICODE_TYPE = "must be a boolean"
ALLOW_UNICODE_NEEDED = "must be true for text outside GSM-7"
ITEM_NOT_OBJECT = "must be a JSON object"
ALREADY_USED = "already used"


@dataclass(slots=True)
class ValidItem:
    """A valid SMS item with its segments and its price per part in micro-units."""

    to: str
    sender: str
    text: str
    client_id: str | None
    encoding: str
    parts: int
    unit_micros: int


def check_to(to: Any) -> tuple[str | None, str | None]:
    """``(region, None)`` for a usable destination number, else ``(None, error message)``."""
    if not isinstance(to, str) or E164.fullmatch(to) is None:
        return None, TO_FORMAT
    region = region_for_e164(to)
    if region is None:
        return None, TO_UNKNOWN_CODE
    return region, None


#: Texts whose segments are remembered (campaigns repeat their texts); the cache is emptied when full.
SEGMENT_CACHE_SIZE = 4096
_segment_cache: dict[str, tuple[str, int, bool]] = {}


def segments_of(text: str) -> tuple[str, int, bool]:
    """``(encoding, parts, needs_unicode)`` of ``text``, cached."""
    known = _segment_cache.get(text)
    if known is None:
        segments = count_segments(text)
        known = (segments.encoding, segments.parts, segments.needs_unicode)
        if len(_segment_cache) >= SEGMENT_CACHE_SIZE:
            _segment_cache.clear()
        _segment_cache[text] = known
    return known


def check_item(item: Any, prices: dict[str, int]) -> tuple[ValidItem | None, dict[str, list[str]] | None]:
    """Validate one item against ``prices`` (region → micro-units per part).

    Returns ``(ValidItem, None)`` or ``(None, {field: [messages]})``. Valid items take the fast
    path; :func:`explain` then lists every problem of an invalid one.
    """
    if type(item) is dict:
        to = item.get("to")
        sender = item.get("from")
        text = item.get("text")
        client_id = item.get("clientId")
        allow_unicode = item.get("allowUnicode")
        if (type(to) is str and _is_e164(to) is not None
                and type(sender) is str and 0 < len(sender) <= MAX_SENDER
                and type(text) is str and text
                and (client_id is None or (type(client_id) is str and 0 < len(client_id) <= MAX_CLIENT_ID))
                and (allow_unicode is None or allow_unicode is True or allow_unicode is False)):
            region = region_for_e164(to)
            unit = prices.get(region) if region is not None else None
            if unit is not None:
                encoding, parts, needs_unicode = segments_of(text)
                if not needs_unicode or allow_unicode is True:
                    return ValidItem(to, sender, text, client_id, encoding, parts, unit), None
    return None, explain(item, prices) or {"item": ["is invalid"]}


_is_e164 = E164.fullmatch


def explain(item: Any, prices: dict[str, int]) -> dict[str, list[str]]:
    """Every problem of ``item``, as ``{field: [messages]}`` (empty for a valid item)."""
    if not isinstance(item, dict):
        return {"item": [ITEM_NOT_OBJECT]}
    errors: dict[str, list[str]] = {}
    region, problem = check_to(item.get("to"))
    if problem is not None:
        errors["to"] = [problem]
    elif region is not None and region not in prices:
        errors["to"] = [TO_UNPRICED.format(region)]
    sender = item.get("from")
    if not isinstance(sender, str) or not 0 < len(sender) <= MAX_SENDER:
        errors["from"] = [FROM_INVALID]
    allow_unicode = item.get("allowUnicode")
    if allow_unicode is not None and not isinstance(allow_unicode, bool):
        errors["allowUnicode"] = [ALLOW_UNICODE_TYPE]
    text = item.get("text")
    if not isinstance(text, str) or not text:
        errors["text"] = [TEXT_INVALID]
    elif segments_of(text)[2] and allow_unicode is not True:
        errors.setdefault("allowUnicode", []).append(ALLOW_UNICODE_NEEDED)
    client_id = item.get("clientId")
    if client_id is not None and (not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ID):
        errors["clientId"] = [CLIENT_ID_INVALID]
    return errors
