"""The stored form of a batch's prepared messages: column lists, JSON, zlib-compressed.

A batch of 100 personalised messages is about 10 KB of JSON and about 2 KB once compressed. To
keep it small (most of what a sent campaign holds in Redis besides its ledger) the rows are kept
as differences (mostly 1) and the columns that repeat (sender, parts, unicode, price, country) as
a list of their distinct combinations and one small index per message: ``[2, row deltas, to,
text, combinations, indexes]``. The first form, a list of the eight columns, is still read. The
``clientId`` of each message is derived (``{campaign}-{batch}-{index}``), never stored. Because it
names where the message lives, a delivery report can be matched to its record in O(1), even when
it arrives before the send's outcome has been recorded.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, get_args, get_type_hints

import orjson

from dispatcher.instasent.models import SmsItem
from dispatcher.schema.names import MESSAGE_FIELDS

#: Stored columns, in order.
COLUMNS = MESSAGE_FIELDS
#: zlib level: 1 is several times faster than the default and nearly as small for this data.
_LEVEL = 1
#: The columns kept as distinct combinations plus an index per message, in order.
_REPEATING = ("sender", "parts", "unicode", "price", "country")
#: The first element of the current stored form (the first form starts with a list).
_FORM = 2
#: ``str(i)`` of every message index a batch can have (at most 100 per bulk; kept generous).
_DIGITS = tuple(str(i) for i in range(1000))


@dataclass(frozen=True, slots=True)
class BatchMessages:
    """The messages of one batch, as columns (all lists have the same length)."""

    row: list[int]
    to: list[str]
    text: list[str]
    sender: list[str]
    parts: list[int]
    unicode: list[bool]
    price: list[float]
    country: list[str]
    #: The batch number (not stored: known from the key the batch was read from).
    batch: int = 0

    def __len__(self) -> int:
        return len(self.row)

    def client_id(self, campaign_id: str, index: int) -> str:
        """The deterministic ``clientId`` of message ``index``: the same on every retry."""
        return client_id(campaign_id, self.batch, index)

    def item(self, campaign_id: str, index: int) -> SmsItem:
        """Message ``index`` as an SMS item ready for the API."""
        return SmsItem(sender=self.sender[index], to=self.to[index], text=self.text[index],
                       client_id=self.client_id(campaign_id, index), allow_unicode=self.unicode[index])

    def wire_items(self, campaign_id: str, indexes: Sequence[int]) -> list[dict[str, Any]]:
        """Messages ``indexes`` as bulk items in wire form, straight from the columns (no
        :class:`SmsItem` each: this is the sending hot path)."""
        return self.wire_items_with_ids(self.client_ids(campaign_id, indexes), indexes)

    def client_ids(self, campaign_id: str, indexes: Sequence[int]) -> list[str]:
        """The ``clientId`` of each of messages ``indexes``, in order."""
        prefix = f"{campaign_id}-{self.batch}-"
        return [prefix + _DIGITS[i] for i in indexes]

    def wire_items_with_ids(self, client_ids: Sequence[str], indexes: Sequence[int]) -> list[dict[str, Any]]:
        """:meth:`wire_items` with the ``clientId`` of each message already known (in order)."""
        sender, to, text, unicode = self.sender, self.to, self.text, self.unicode
        items: list[dict[str, Any]] = [{"from": sender[i], "to": to[i], "text": text[i], "clientId": client_id}
                                       for client_id, i in zip(client_ids, indexes, strict=True)]
        if True in unicode:  # most batches have no Unicode text: skip the second pass
            for item, i in zip(items, indexes, strict=True):
                if unicode[i]:
                    item["allowUnicode"] = True  # as models.wire_item spells it
        return items


#: Each stored column's value type, as :class:`BatchMessages` declares it.
_TYPES: dict[str, Callable[[Any], Any]] = {
    name: get_args(hint)[0] for name, hint in get_type_hints(BatchMessages).items() if name in COLUMNS}


def stored_columns(column: Callable[[str, Callable[[Any], Any]], list[Any]]) -> dict[str, list[Any]]:
    """A batch's columns for :func:`encode`, by name; ``column(name, value_type)`` gives the
    message column ``name`` (:data:`dispatcher.schema.names.MESSAGE_COLUMNS`) as a list, its
    values meant to be of ``value_type``."""
    return {name: column(name, _TYPES[name]) for name in MESSAGE_FIELDS}


def client_id(campaign_id: str, batch: int, index: int) -> str:
    """``clientId`` of message ``index`` of batch ``batch`` (at most 40 characters)."""
    return f"{campaign_id}-{batch}-{index}"


def parse_client_id(value: str) -> tuple[str, int, int] | None:
    """``(campaign_id, batch, index)`` of one of our clientIds, or None for anything else."""
    campaign_id, _, rest = value.partition("-")
    batch, _, index = rest.partition("-")
    if not campaign_id or not batch.isdigit() or not index.isdigit():
        return None
    return campaign_id, int(batch), int(index)


def encode(columns: dict[str, list[Any]]) -> bytes:
    """Compress the column lists of one batch (see the module docstring for the form)."""
    row = columns["row"]
    deltas = [b - a for a, b in zip([0, *row], row, strict=False)]
    combos: dict[tuple[Any, ...], int] = {}
    indexes = [combos.setdefault(combo, len(combos)) for combo in zip(*(columns[n] for n in _REPEATING), strict=True)]
    stored = [_FORM, deltas, columns["to"], columns["text"], [list(c) for c in combos], indexes]
    return zlib.compress(orjson.dumps(stored), _LEVEL)


def decode(blob: bytes, batch: int) -> BatchMessages:
    """Decompress batch number ``batch`` (either stored form)."""
    stored = orjson.loads(zlib.decompress(blob))
    if stored[0] != _FORM:
        return BatchMessages(**dict(zip(COLUMNS, stored, strict=True)), batch=batch)
    _, deltas, to, text, combos, indexes = stored
    # Column by column over the few distinct combinations: transposing 100 tuples was most of the cost.
    sender, parts, unicode, price, country = ([column[i] for i in indexes] for column in _transpose(combos))
    return BatchMessages(row=list(accumulate(deltas)), to=to, text=text, sender=sender, parts=parts,
                         unicode=unicode, price=price, country=country, batch=batch)


def _transpose(combos: list[list[Any]]) -> list[tuple[Any, ...]]:
    """The repeating columns' values, one tuple per column, one value per combination."""
    return list(zip(*combos, strict=True)) if combos else [() for _ in _REPEATING]
