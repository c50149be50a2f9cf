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
    """Write ``row,value,reason`` rows as UTF-8 CSV with a byte-order mark (Excel reads it right),
    as Parquet when ``path`` ends in ``.parquet``, or as one ``.xlsx`` sheet (every cell text, so
    no value is ever run or turned into a number); returns the number of rows written. Rows are
    written as they come (Parquet in row groups), so memory does not grow with their number.

    Raises:
        OSError: when the file cannot be written.
    """
    if str(path).lower().endswith((".parquet", ".pq")):
        return _write_parquet(path, rejects)
    if str(path).lower().endswith(".xlsx"):
        return _write_xlsx(path, rejects)
    count = 0
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["row", "value", "reason"])
        for reject in rejects:
            writer.writerow([reject.row, safe_cell(reject.value), safe_cell(reject.reason)])
            count += 1
    return count


#: Rejects per Parquet row group.
ROW_GROUP = 100_000


def _write_parquet(path: str | Path, rejects: Iterable[Reject]) -> int:
    """Parquet, values untouched (no spreadsheet runs them), one row group per :data:`ROW_GROUP` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("row", pa.int64()), ("value", pa.string()), ("reason", pa.string())])
    count = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        for group in batched(rejects, ROW_GROUP):
            writer.write_table(pa.table([[r.row for r in group], [r.value for r in group], [r.reason for r in group]],
                                        schema=schema))
            count += len(group)
        if count == 0:
            writer.write_table(schema.empty_table())
    return count


#: Rows an ``.xlsx`` sheet holds, header included.
XLSX_MAX_ROWS = 1_048_576


def _write_xlsx(path: str | Path, rejects: Iterable[Reject]) -> int:
    """One sheet in openpyxl's write-only mode (memory stays flat); rows past a sheet's capacity are
    not written, and the last row says so.

    Raises:
        OSError: when the file cannot be written.
    """
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    book = Workbook(write_only=True)
    sheet = book.create_sheet("rejects")
    sheet.append(["row", "value", "reason"])
    count = 0
    for reject in rejects:
        if count + 2 >= XLSX_MAX_ROWS:
            sheet.append([None, None, "more rejected rows than a sheet holds: write .csv or .parquet for all"])
            break
        cells = []
        for value in (reject.value, reject.reason):
            cell = WriteOnlyCell(sheet, value=value)
            cell.data_type = "s"  # a string cell: never evaluated, even when it starts with '='
            cell.number_format = "@"
            cells.append(cell)
        sheet.append([reject.row, *cells])
        count += 1
    book.save(str(path))
    return count


def rejects_format(path: str | Path) -> str:
    """``csv``, ``xlsx`` or ``parquet`` from the extension of ``path``.

    Raises:
        ValueError: for any other extension (the caller words it for its user).
    """
    name = str(path).lower()
    for suffix, kind in ((".csv", "csv"), (".xlsx", "xlsx"), (".parquet", "parquet"), (".pq", "parquet")):
        if name.endswith(suffix):
            return kind
    raise ValueError(name)


def batched(items: Iterable[Reject], size: int) -> Iterable[list[Reject]]:
    """``items`` in lists of ``size`` (the last may be shorter)."""
    group: list[Reject] = []
    for item in items:
        group.append(item)
        if len(group) >= size:
            yield group
            group = []
    if group:
        yield group
