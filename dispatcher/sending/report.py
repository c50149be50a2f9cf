"""Per-message reports: one row per message with its final outcome, as CSV, Excel or Parquet."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell

from dispatcher.errors import InputError
from dispatcher.preflight.rejects import safe_cell
from dispatcher.sending.store import CampaignStore

#: Report columns, in order.
COLUMNS = ("row", "to", "clientId", "status", "instasent_id", "parts", "price", "attempts", "error", "delivery",
           "delivered_at")


def build_report(store: CampaignStore, cid: str) -> pd.DataFrame:
    """Every message of campaign ``cid`` with its status, Instasent id, parts, price and error."""
    columns: dict[str, list[object]] = {name: [] for name in COLUMNS}
    for n, messages, records in store.iter_batches(cid):
        deliveries = store.deliveries(cid, n)
        for i in range(len(messages)):
            record = records.get(i)
            delivery = deliveries.get(i, ("", "", ""))
            columns["delivery"].append(delivery[0])
            columns["delivered_at"].append(delivery[1])
            status = record.status if record else "pending"
            columns["row"].append(messages.rows[i])
            columns["to"].append(messages.to[i])
            columns["clientId"].append(messages.client_id(cid, i))
            columns["status"].append(status)
            columns["instasent_id"].append(record.instasent_id if record else "")
            columns["parts"].append(messages.parts[i])
            columns["price"].append(messages.price[i])
            columns["attempts"].append(record.attempts if record else 0)
            columns["error"].append(record.error if record else "")
    return pd.DataFrame(columns)


def write_report(frame: pd.DataFrame, path: Path) -> str:
    """Write ``frame`` in the format its extension names; returns the format used.

    ``.csv`` (also ``.csv.gz``) serves scripts: valid E.164 numbers stay as they are, every other
    cell that came from outside is neutralised for spreadsheets (see :func:`csv_cell`). ``.xlsx``
    serves spreadsheet users: phone numbers are text cells, so Excel never turns them into
    ``3.46E+10``, and no cell is ever a formula. ``.parquet`` serves data tools, values untouched.

    Raises:
        InputError: for any other extension (nothing is written), or when the file cannot be written.
    """
    kind = report_format(path)
    try:
        if kind == "parquet":
            frame.to_parquet(path, index=False)
        elif kind == "xlsx":
            _write_xlsx(frame, path)
        else:
            _csv_safe(frame).to_csv(path, index=False)
    except OSError as exc:
        raise InputError(f"cannot write the report to {path}: {exc.strerror or exc}.") from None
    return kind


def report_format(path: Path) -> str:
    """``csv``, ``xlsx`` or ``parquet``, from the extension of ``path``.

    Raises:
        InputError: for any other extension.
    """
    name = path.name.lower()
    for suffix, kind in _FORMATS.items():
        if name.endswith(suffix):
            return kind
    raise InputError(f"cannot write a report as {path.name}: give a file name ending in .csv, .xlsx or .parquet "
                     "(or no -o for CSV on standard output).")


def report_csv(frame: pd.DataFrame) -> str:
    """The report as CSV text, neutralised as :func:`write_report` does."""
    text: str = _csv_safe(frame).to_csv(index=False)
    return text


def csv_cell(value: object) -> str:
    """A cell for CSV: a valid E.164 number (``+`` and 7..15 digits, which no spreadsheet runs)
    as it is, anything else through :func:`safe_cell`."""
    text = "" if value is None else str(value)
    return text if E164.fullmatch(text) else safe_cell(text)


#: A valid E.164 number: ``+``, a non-zero digit, 6..14 more digits.
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
#: Extension -> format (``.csv.gz`` before anything shorter that it ends with).
_FORMATS = {".csv": "csv", ".csv.gz": "csv", ".xlsx": "xlsx", ".parquet": "parquet", ".pq": "parquet"}
#: Columns whose values come from outside (the recipient file, Instasent, delivery reports).
_OUTSIDE = ("to", "clientId", "instasent_id", "error", "delivery", "delivered_at")
#: Columns written as text cells with the text number format in ``.xlsx``.
_PHONE_COLUMNS = frozenset({"to"})
#: Rows an ``.xlsx`` sheet holds, header included.
XLSX_MAX_ROWS = 1_048_576


def _csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    safe = frame.copy()
    for name in _OUTSIDE:
        if name in safe.columns:
            safe[name] = [csv_cell(v) for v in safe[name]]
    return safe


def _write_xlsx(frame: pd.DataFrame, path: Path) -> None:
    """One sheet, streamed (openpyxl's write-only mode keeps memory flat).

    Raises:
        InputError: when the report has more rows than a sheet holds.
    """
    if len(frame) + 1 > XLSX_MAX_ROWS:
        raise InputError(f"the report has {len(frame):,} messages, more than an .xlsx sheet holds "
                         f"({XLSX_MAX_ROWS - 1:,}): write .csv or .parquet instead.")
    book = Workbook(write_only=True)
    sheet = book.create_sheet("messages")
    columns = list(frame.columns)
    sheet.append(columns)
    text_columns = [name in _OUTSIDE or not pd.api.types.is_numeric_dtype(frame[name]) for name in columns]
    for values in frame.itertuples(index=False, name=None):
        row = []
        for name, value, as_text in zip(columns, values, text_columns, strict=True):
            cell = WriteOnlyCell(sheet, value=str(value) if as_text else value)
            if as_text:
                cell.data_type = "s"  # a string cell: never evaluated, even when it starts with '='
            if name in _PHONE_COLUMNS:
                cell.number_format = "@"
            row.append(cell)
        sheet.append(row)
    book.save(path)
