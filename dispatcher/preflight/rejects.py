"""Rows that will not be sent, and how to hand them to a spreadsheet user safely."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: First characters that make a spreadsheet treat a cell as a formula (CSV/formula injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class Reject:
    """One dropped row: ``row`` as a spreadsheet numbers it (header = 1), the raw phone ``value``
    and a short plain ``reason``."""

    row: int
    value: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        """``{"row": n, "value": raw, "reason": text}``."""
        return {"row": self.row, "value": self.value, "reason": self.reason}


def safe_cell(value: object) -> str:
    """``value`` as text a spreadsheet will show as text: a leading ``= + - @`` (or tab, CR) gets an
    apostrophe in front, so ``=HYPERLINK(...)`` or ``+34 612...`` is never run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_rejects(path: str | Path, rejects: Iterable[Reject]) -> int:
    """Write ``row,value,reason`` rows as UTF-8 CSV with a byte-order mark (Excel reads it right);
    returns the number of rows written.

    Raises:
        OSError: when the file cannot be written.
    """
    count = 0
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["row", "value", "reason"])
        for reject in rejects:
            writer.writerow([reject.row, safe_cell(reject.value), safe_cell(reject.reason)])
            count += 1
    return count
