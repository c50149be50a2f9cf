"""Per-message reports: one row per message with its final outcome, as CSV, Excel or Parquet."""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell

from dispatcher.errors import InputError
from dispatcher.preflight.rejects import FORMULA_STARTS, Reject, rejects_format, safe_cell, write_rejects
from dispatcher.schema.names import DELIVERED, UNDELIVERED
from dispatcher.sending import ledger
from dispatcher.sending.kept import kept_names, kept_rows
from dispatcher.sending.payload import client_id
from dispatcher.sending.store import CampaignStore
from dispatcher.sending.summary import reason_of

#: Report columns, in order. ``delivery`` is the last delivery report's status, ``report_code``
#: its code and ``report_at`` its time; ``delivered_at`` is that time only when it says delivered
#: (a failed delivery keeps its code and time, and ``error`` says why it was not delivered).
COLUMNS = ("row", "to", "clientId", "status", "instasent_id", "parts", "price", "attempts", "error", "delivery",
           "report_code", "report_at", "delivered_at")


#: Messages per streamed piece (CSV write or Parquet row group) of a report.
PIECE_ROWS = 20_000
#: Batches read per Redis round trip (messages, records and delivery reports of each).
READ_BATCHES = 200

SCHEMA = pa.schema([("row", pa.int64()), ("to", pa.string()), ("clientId", pa.string()), ("status", pa.string()),
                    ("instasent_id", pa.string()), ("parts", pa.int64()), ("price", pa.float64()),
                    ("attempts", pa.int64()), ("error", pa.string()), ("delivery", pa.string()),
                    ("report_code", pa.string()), ("report_at", pa.string()), ("delivered_at", pa.string())])


def build_report(store: CampaignStore, campaign_id: str) -> pd.DataFrame:
    """Every message of campaign ``campaign_id`` with its status, Instasent id, parts, price and error
    (and the list's kept columns, see :mod:`dispatcher.sending.kept`)."""
    names = report_columns(store, campaign_id)
    columns: dict[str, list[object]] = {name: [] for name in names}
    for piece in _pieces(store, campaign_id, PIECE_ROWS):
        for name in names:
            columns[name] += piece[name]
    return pd.DataFrame(columns)


def report_columns(store: CampaignStore, campaign_id: str) -> tuple[str, ...]:
    """:data:`COLUMNS`, then the list's kept columns (a name already used gets ``list:`` in front)."""
    return COLUMNS + tuple(f"list:{name}" if name in COLUMNS else name for name in kept_names(store, campaign_id))


def iter_report(store: CampaignStore, campaign_id: str, piece_rows: int = PIECE_ROWS) -> Iterator[pa.Table]:
    """:func:`build_report` in pieces of about ``piece_rows`` messages, in order (bounded memory)."""
    schema = _schema(report_columns(store, campaign_id))
    for piece in _pieces(store, campaign_id, piece_rows):
        yield pa.table(piece, schema=schema)


def _schema(names: tuple[str, ...]) -> pa.Schema:
    """:data:`SCHEMA` with a string column for each kept list column."""
    return pa.schema([*SCHEMA, *((name, pa.string()) for name in names[len(COLUMNS):])])


def _pieces(store: CampaignStore, campaign_id: str, piece_rows: int) -> Iterator[dict[str, list[object]]]:
    names = report_columns(store, campaign_id)
    extra = names[len(COLUMNS):]
    columns: dict[str, list[object]] = {name: [] for name in names}
    for n, messages, records, deliveries in store.iter_raw_batches(campaign_id, READ_BATCHES, deliveries=True):
        size = len(messages)
        if extra:
            cells = kept_rows(store, campaign_id, list(messages.row), len(extra))
            for j, name in enumerate(extra):
                columns[name] += [row[j] for row in cells]
        columns["row"] += messages.row
        columns["to"] += messages.to
        columns["clientId"] += [client_id(campaign_id, n, i) for i in range(size)]
        columns["parts"] += messages.parts
        columns["price"] += messages.price
        status, instasent_id, attempts, error = (columns[c] for c in ("status", "instasent_id", "attempts", "error"))
        delivery, delivered_at = columns["delivery"], columns["delivered_at"]
        report_code, report_at = columns["report_code"], columns["report_at"]
        for i in range(size):
            state, tries, detail = ledger.fields(records.get(str(i).encode()))
            status.append(state)
            attempts.append(tries)
            instasent_id.append(detail if state == "sent" else "")
            report = deliveries.get(str(i).encode())
            if report is None:
                error.append("" if state in ("sent", "pending") else detail)
                delivery.append("")
                report_code.append("")
                report_at.append("")
                delivered_at.append("")
                continue
            # status|eventAt|code|micros|rank (see dispatcher.delivery.reports)
            said, at, code = [*report.decode().split("|", 3), "", ""][:3]
            delivery.append(said)
            report_code.append(code)
            report_at.append(at)
            delivered_at.append(at if said.lower() in DELIVERED else "")
            undelivered = state == "sent" and said.lower() in UNDELIVERED
            error.append(f"undelivered: {reason_of(said.lower(), code)}" if undelivered
                         else "" if state in ("sent", "pending") else detail)
        if len(columns["row"]) >= piece_rows:
            yield columns
            columns = {name: [] for name in names}
    if columns["row"]:
        yield columns


def iter_report_csv(store: CampaignStore, campaign_id: str, piece_rows: int = PIECE_ROWS) -> Iterator[str]:
    """:func:`report_csv` in pieces of CSV text (the header in the first), for standard output."""
    buffer = io.StringIO()
    writer = _csv_writer(buffer)
    writer.writerow(report_columns(store, campaign_id))
    for piece in _pieces(store, campaign_id, piece_rows):
        _write_csv_piece(writer, piece)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()


def stream_report(store: CampaignStore, campaign_id: str, path: Path, piece_rows: int = PIECE_ROWS) -> tuple[str, int]:
    """Write the report of ``campaign_id`` to ``path`` piece by piece, as :func:`write_report` writes it
    (CSV in pieces, Parquet in row groups; ``.xlsx``, at most a sheet's rows, is built whole);
    returns ``(format, messages written)``. Memory stays that of one piece.

    Raises:
        InputError: for an unknown extension, or when the file cannot be written.
    """
    kind = report_format(path)
    if kind == "xlsx":
        frame = build_report(store, campaign_id)
        return write_report(frame, path), len(frame)
    count = 0
    try:
        if kind == "parquet":
            schema = _schema(report_columns(store, campaign_id))
            with pq.ParquetWriter(str(path), schema) as writer:
                for table in iter_report(store, campaign_id, piece_rows):
                    writer.write_table(table)
                    count += table.num_rows
                if count == 0:
                    writer.write_table(schema.empty_table())
            return kind, count
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "wt", encoding="utf-8", newline="") as f:
            csv_writer = _csv_writer(f)
            csv_writer.writerow(report_columns(store, campaign_id))
            for piece in _pieces(store, campaign_id, piece_rows):
                count += _write_csv_piece(csv_writer, piece)
        return kind, count
    except OSError as exc:
        raise InputError(f"cannot write the report to {path}: {exc.strerror or exc}.") from None


def _csv_writer(f: IO[str]) -> Any:
    """A CSV writer that writes what ``DataFrame.to_csv`` writes (minimal quoting, ``\\n``), so a
    streamed report is byte for byte the one :func:`write_report` writes."""
    return csv.writer(f, lineterminator="\n")


def _write_csv_piece(writer: Any, piece: dict[str, list[object]]) -> int:
    """Write one piece's rows, cells from outside neutralised as :func:`csv_cell` does; returns
    how many. Python's C csv writer: several times faster than a frame's ``to_csv``."""
    # The list's kept columns (every name past COLUMNS) came from outside too.
    safe = {name: _safe_column(cast(list[str], values), phone=name in _PHONE_COLUMNS)
            if name in _OUTSIDE or name not in COLUMNS else values for name, values in piece.items()}
    writer.writerows(zip(*safe.values(), strict=True))
    return len(piece["row"])


def _safe_column(values: list[str], phone: bool) -> list[object]:
    """:func:`csv_cell` of every value of a column of strings, checking only the first character
    of most (the report's hot path)."""
    return [v if not v or v[0] not in _STARTS or (phone and E164.fullmatch(v)) else "'" + v for v in values]


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
_OUTSIDE = ("to", "clientId", "instasent_id", "error", "delivery", "report_code", "report_at", "delivered_at")
#: First characters that make a spreadsheet run a cell (see :func:`safe_cell`).
_STARTS = frozenset(FORMULA_STARTS)
#: Columns written as text cells with the text number format in ``.xlsx``.
_PHONE_COLUMNS = frozenset({"to"})
#: Rows an ``.xlsx`` sheet holds, header included.
XLSX_MAX_ROWS = 1_048_576


def _csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    safe = frame.copy()
    for name in safe.columns:
        if name in _OUTSIDE or name not in COLUMNS:  # the list's kept columns came from outside too
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
    text_columns = [name in _OUTSIDE or name not in COLUMNS or not pd.api.types.is_numeric_dtype(frame[name])
                    for name in columns]
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


#: Rejects read per Redis round trip when counting them by reason.
REJECT_READ = 5000


@dataclass(frozen=True, slots=True)
class RejectsPage:
    """One page of a campaign's stored rejects: ``rows`` from ``offset``, all ``total`` of them
    counted by reason in ``reasons`` (most frequent first)."""

    total: int
    reasons: dict[str, int]
    rows: list[dict[str, Any]]


def rejects_page(store: CampaignStore, campaign_id: str, offset: int, limit: int) -> RejectsPage:
    """Rejects ``offset`` to ``offset + limit`` of a campaign, with the count of every reason.

    The reasons are counted over all the rejects, :data:`REJECT_READ` at a time, so memory holds
    one read plus the page, however many rows the list had.
    """
    key = store.keys.rejects(campaign_id)
    total = int(store.redis.llen(key))
    reasons: Counter[str] = Counter()
    for start in range(0, total, REJECT_READ):
        for raw in store.redis.lrange(key, start, start + REJECT_READ - 1):
            reasons[str(orjson.loads(raw).get("reason", ""))] += 1
    rows = [orjson.loads(raw) for raw in store.redis.lrange(key, offset, offset + limit - 1)] if offset < total else []
    return RejectsPage(total=total, reasons=dict(reasons.most_common()), rows=rows)


def iter_stored_rejects(store: CampaignStore, campaign_id: str) -> Iterator[Reject]:
    """The rejected rows stored with campaign ``campaign_id``, in order, :data:`REJECT_READ` per read."""
    key = store.keys.rejects(campaign_id)
    start = 0
    while True:
        raws = store.redis.lrange(key, start, start + REJECT_READ - 1)
        for raw in raws:
            item = orjson.loads(raw)
            yield Reject(int(item.get("row", 0)), str(item.get("value", "")), str(item.get("reason", "")))
        if len(raws) < REJECT_READ:
            return
        start += REJECT_READ


def write_campaign_rejects(store: CampaignStore, campaign_id: str, path: Path) -> tuple[str, int]:
    """Write the rejected rows of campaign ``campaign_id`` to ``path`` (``.csv``, ``.xlsx`` or
    ``.parquet``, as ``preflight --rejects-out`` writes them); returns ``(format, rows written)``.

    Raises:
        UnknownItem: when no campaign has that id.
        InputError: for another extension, or when the file cannot be written.
    """
    kind = campaign_rejects_format(path)
    store.get(campaign_id)
    try:
        return kind, write_rejects(path, iter_stored_rejects(store, campaign_id))
    except OSError as exc:
        raise InputError(f"cannot write the rejected rows to {path}: {exc.strerror or exc}.") from None


def campaign_rejects_format(path: Path) -> str:
    """``csv``, ``xlsx`` or ``parquet`` from the extension of ``path``.

    Raises:
        InputError: for any other extension.
    """
    try:
        return rejects_format(path)
    except ValueError:
        raise InputError(f"cannot write rejected rows as {path.name}: give a file name ending in .csv, .xlsx or "
                         ".parquet.") from None
