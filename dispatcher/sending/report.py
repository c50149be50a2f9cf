"""Per-message reports: one row per message with its final outcome, as CSV or Parquet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

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


def stream_report(store: CampaignStore, cid: str, path: Path, piece_rows: int = PIECE_ROWS) -> tuple[str, int]:
    """Write the report of ``cid`` to ``path`` piece by piece, as :func:`write_report` would write
    it (Parquet in row groups); returns ``(format, messages written)``. Memory stays that of one piece.

    Raises:
        InputError: when the file cannot be written.
    """
    count = 0
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            with pq.ParquetWriter(str(path), SCHEMA) as writer:
                for table in iter_report(store, cid, piece_rows):
                    writer.write_table(table)
                    count += table.num_rows
                if count == 0:
                    writer.write_table(SCHEMA.empty_table())
            return "parquet", count
        with open(path, "w", encoding="utf-8", newline="") as f:
            header = True
            for table in iter_report(store, cid, piece_rows):
                _csv_safe(table.to_pandas()).to_csv(f, index=False, header=header)
                header, count = False, count + table.num_rows
            if header:
                _csv_safe(SCHEMA.empty_table().to_pandas()).to_csv(f, index=False)
        return "csv", count
    except OSError as exc:
        raise InputError(f"cannot write the report to {path}: {exc.strerror or exc}.") from None


def _csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells a spreadsheet would run as a formula, neutralised."""
    safe = frame.copy()
    for name in ("to", "error", "instasent_id", "clientId"):
        safe[name] = [safe_cell(str(v)) for v in safe[name]]
    return safe


def write_report(frame: pd.DataFrame, path: Path) -> str:
    """Write ``frame`` as Parquet (``.parquet``) or CSV (anything else); returns the format used.

    CSV cells that a spreadsheet would run as a formula are neutralised.

    Raises:
        InputError: when the file cannot be written.
    """
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame.to_parquet(path, index=False)
            return "parquet"
        _csv_safe(frame).to_csv(path, index=False)
        return "csv"
    except OSError as exc:
        raise InputError(f"cannot write the report to {path}: {exc.strerror or exc}.") from None
