"""Per-message reports: one row per message with its final outcome, as CSV, Excel or Parquet."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell

from dispatcher.errors import InputError
from dispatcher.preflight.rejects import safe_cell
from dispatcher.sending.store import CampaignStore

#: Report columns, in order.
COLUMNS = ("row", "to", "clientId", "status", "instasent_id", "parts", "price", "attempts", "error", "delivery",
           "delivered_at")


#: Messages per streamed piece (CSV write or Parquet row group) of a report.
PIECE_ROWS = 20_000

SCHEMA = pa.schema([("row", pa.int64()), ("to", pa.string()), ("clientId", pa.string()), ("status", pa.string()),
                    ("instasent_id", pa.string()), ("parts", pa.int64()), ("price", pa.float64()),
                    ("attempts", pa.int64()), ("error", pa.string()), ("delivery", pa.string()),
                    ("delivered_at", pa.string())])


def build_report(store: CampaignStore, cid: str) -> pd.DataFrame:
    """Every message of campaign ``cid`` with its status, Instasent id, parts, price and error."""
    columns: dict[str, list[object]] = {name: [] for name in COLUMNS}
    for piece in _pieces(store, cid, PIECE_ROWS):
        for name in COLUMNS:
            columns[name] += piece[name]
    return pd.DataFrame(columns)


def iter_report(store: CampaignStore, cid: str, piece_rows: int = PIECE_ROWS) -> Iterator[pa.Table]:
    """:func:`build_report` in pieces of about ``piece_rows`` messages, in order (bounded memory)."""
    for piece in _pieces(store, cid, piece_rows):
        yield pa.table(piece, schema=SCHEMA)


def _pieces(store: CampaignStore, cid: str, piece_rows: int) -> Iterator[dict[str, list[object]]]:
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
        if len(columns["row"]) >= piece_rows:
            yield columns
            columns = {name: [] for name in COLUMNS}
    if columns["row"]:
        yield columns


def iter_report_csv(store: CampaignStore, cid: str, piece_rows: int = PIECE_ROWS) -> Iterator[str]:
    """:func:`report_csv` in pieces of CSV text (the header in the first), for standard output."""
    header = True
    for table in iter_report(store, cid, piece_rows):
        yield _csv_safe(table.to_pandas()).to_csv(index=False, header=header)
        header = False
    if header:
        yield _csv_safe(SCHEMA.empty_table().to_pandas()).to_csv(index=False)


def stream_report(store: CampaignStore, cid: str, path: Path, piece_rows: int = PIECE_ROWS) -> tuple[str, int]:
    """Write the report of ``cid`` to ``path`` piece by piece, as :func:`write_report` writes it
    (CSV in pieces, Parquet in row groups; ``.xlsx``, at most a sheet's rows, is built whole);
    returns ``(format, messages written)``. Memory stays that of one piece.

    Raises:
        InputError: for an unknown extension, or when the file cannot be written.
    """
    kind = report_format(path)
    if kind == "xlsx":
        frame = build_report(store, cid)
        return write_report(frame, path), len(frame)
    count = 0
    try:
        if kind == "parquet":
            with pq.ParquetWriter(str(path), SCHEMA) as writer:
                for table in iter_report(store, cid, piece_rows):
                    writer.write_table(table)
                    count += table.num_rows
                if count == 0:
                    writer.write_table(SCHEMA.empty_table())
            return kind, count
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "wt", encoding="utf-8", newline="") as f:
            header = True
            for table in iter_report(store, cid, piece_rows):
                _csv_safe(table.to_pandas()).to_csv(f, index=False, header=header)
                header, count = False, count + table.num_rows
            if header:
                _csv_safe(SCHEMA.empty_table().to_pandas()).to_csv(f, index=False)
        return kind, count
    except OSError as exc:
        raise InputError(f"cannot write the report to {path}: {exc.strerror or exc}.") from None


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
