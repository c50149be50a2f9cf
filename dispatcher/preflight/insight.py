"""What a preflight shows before Send, beyond the counts: the first messages as they will be sent,
which characters force Unicode and what that adds, and how many messages have each number of parts.

Counted chunk by chunk in bounded memory (:class:`Insight` is part of a pass's totals): the
preview keeps the :data:`PREVIEW_ROWS` lowest rows, the characters are looked for in at most
:data:`CHAR_SAMPLE` distinct Unicode texts, and the parts Unicode adds are measured on every
Unicode message at once (its text with each non-GSM character replaced by ``?``, counted as GSM).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dispatcher.instasent.segments import GSM_BASIC, GSM_EXTENSION
from dispatcher.preflight import arrow
from dispatcher.preflight.render import _NOT_GSM_RE2, measure

#: Messages shown rendered.
PREVIEW_ROWS = 5
#: Distinct Unicode texts looked into for the characters that force Unicode, per pass.
CHAR_SAMPLE = 10_000
#: Characters listed, the most frequent first.
MAX_CHARS = 20
_NOT_GSM = re.compile("[^" + re.escape(GSM_BASIC + GSM_EXTENSION) + "]")


@dataclass(slots=True)
class Insight:
    """The preview, the Unicode characters and the parts histogram of the chunks added so far."""

    preview: list[dict[str, Any]] = field(default_factory=list)
    chars: Counter[str] = field(default_factory=Counter)
    sampled: int = 0
    extra_parts: int = 0
    extra_cost: float = 0.0
    parts: Counter[int] = field(default_factory=Counter)

    def add(self, table: pa.Table) -> None:
        """Count one chunk's messages (columns of ``MESSAGE_SCHEMA``)."""
        if not table.num_rows:
            return
        grouped = table.group_by("parts").aggregate([("row", "count")])
        for parts, count in zip(grouped.column("parts").to_pylist(), grouped.column("row_count").to_pylist(),
                                strict=True):
            self.parts[int(parts)] += int(count)
        self._preview(table)
        unicode = arrow.as_numpy(table.column("unicode").combine_chunks())
        idx = np.flatnonzero(unicode)
        if not len(idx):
            return
        chosen = arrow.subset(table.column("text").combine_chunks(), idx)
        parts = arrow.as_numpy(arrow.subset(table.column("parts").combine_chunks(), idx)).astype(np.int64)
        prices = arrow.as_numpy(arrow.subset(table.column("price").combine_chunks(), idx)).astype(np.float64)
        as_gsm = measure(pc.replace_substring_regex(chosen, _NOT_GSM_RE2, "?")).parts.astype(np.int64)
        extra = np.maximum(parts - as_gsm, 0)
        self.extra_parts += int(extra.sum())
        with np.errstate(divide="ignore", invalid="ignore"):
            self.extra_cost += float(np.nansum(np.where(parts > 0, prices / parts * extra, 0.0)))
        if self.sampled < CHAR_SAMPLE:
            texts, counts = _distinct(chosen)
            for text, n in zip(texts[:CHAR_SAMPLE - self.sampled], counts, strict=False):
                for char in set(_NOT_GSM.findall(text or "")):
                    self.chars[char] += n
            self.sampled += min(len(texts), CHAR_SAMPLE - self.sampled)

    def _preview(self, table: pa.Table) -> None:
        rows = table.column("row").to_pylist()
        if len(self.preview) >= PREVIEW_ROWS and min(rows) > self.preview[-1]["row"]:
            return
        head = table.slice(0, PREVIEW_ROWS * 4)
        # Not every chunk comes in file order: keep the lowest rows seen.
        candidates = self.preview + [
            {"row": int(r["row"]), "to": r["to"], "text": r["text"], "sender": r["sender"], "parts": int(r["parts"]),
             "encoding": "Unicode" if r["unicode"] else "GSM-7", "country": r["country"]}
            for r in head.to_pylist()]
        self.preview = sorted(candidates, key=lambda r: r["row"])[:PREVIEW_ROWS]

    def merge(self, other: Insight) -> None:
        """Add the counts of ``other`` (a pass counted in pieces)."""
        self.preview = sorted(self.preview + other.preview, key=lambda r: r["row"])[:PREVIEW_ROWS]
        self.chars.update(other.chars)
        self.sampled += other.sampled
        self.extra_parts += other.extra_parts
        self.extra_cost += other.extra_cost
        self.parts.update(other.parts)

    def to_json(self) -> dict[str, Any]:
        """``preview``, ``unicode_chars`` (``char``, ``codepoint``, ``name``, ``messages``),
        ``unicode_extra_parts``, ``unicode_extra_cost`` (a float: the preflight's JSON turns money
        into decimal strings) and ``parts_per_message`` (``{"1": n, "2": m}``)."""
        return {
            "preview": self.preview,
            "unicode_chars": [{"char": c, "codepoint": f"U+{ord(c):04X}", "name": unicodedata.name(c, ""),
                               "messages": n} for c, n in self.chars.most_common(MAX_CHARS)],
            "unicode_extra_parts": self.extra_parts, "unicode_extra_cost": self.extra_cost,
            "parts_per_message": {str(k): v for k, v in sorted(self.parts.items())},
        }


def _distinct(texts: pa.Array) -> tuple[list[str], list[int]]:
    """The distinct texts of ``texts`` and how many times each occurs."""
    counted = pc.value_counts(texts)
    return counted.field("values").to_pylist(), counted.field("counts").to_pylist()
