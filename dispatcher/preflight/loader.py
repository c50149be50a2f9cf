"""Read recipient files: CSV (also gzipped) and Excel ``.xlsx``, every cell as text, in chunks.

:func:`scan` hands the rows of a file :func:`~dispatcher.preflight.fileformat.sniff` has looked at to
a callback in chunks of bounded size, so a file of a million rows never sits in memory whole. Phone
numbers are never read as numbers.

Row numbers are the ones a spreadsheet shows: the header is row 1, a quoted value that spans several
lines is still one row, and blank rows count but are never passed on.

CSV goes through pyarrow's streaming reader. A row with more or fewer fields than the header makes
pyarrow stop; :func:`scan` then starts again with Python's ``csv`` module, which pads short rows and
reports long ones (see :attr:`Chunk.problems`) so the row numbers stay right.
"""

from __future__ import annotations

import csv
import gzip
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from dispatcher.errors import InputError
from dispatcher.preflight.fileformat import FileFormat, cell_text, load_sheet
from dispatcher.preflight.rejects import Reject

T = TypeVar("T")

#: Rows handed to the callback at once (about 20-40 MB of text for typical recipient files).
DEFAULT_CHUNK_ROWS = 100_000
#: Bytes pyarrow parses per block.
DEFAULT_BLOCK_BYTES = 4 << 20


@dataclass(slots=True)
class Chunk:
    """Consecutive rows of a file: ``table`` holds every column as strings (never null);
    ``rows[i]`` is the spreadsheet row number of ``table`` row ``i``; ``problems`` lists rows the
    reader itself could not use (they are not in ``table``)."""

    table: pa.Table
    rows: np.ndarray
    problems: list[Reject] = field(default_factory=list)

    def __len__(self) -> int:
        return self.table.num_rows


class _RaggedRows(Exception):
    """pyarrow met a row whose field count differs from the header's."""


class RaggedRows(Exception):
    """:func:`stream` met a ragged row with pyarrow's reader: read again with ``tolerant=True``."""


# -- reading -----------------------------------------------------------------------------------------


def scan(fmt: FileFormat, process: Callable[[Chunk], T], *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
         block_bytes: int = DEFAULT_BLOCK_BYTES, workers: int = 1) -> list[T]:
    """Call ``process`` on every chunk of the file and return its answers, in file order.

    With ``workers`` > 1, that many chunks are processed at once on threads (worth it when
    ``process`` spends its time in pyarrow kernels, which release the GIL); no more chunks than
    that are held at a time. When pyarrow meets a ragged row the whole scan restarts with the
    tolerant reader, so ``process`` must not have lasting side effects.

    Raises:
        InputError: when the file cannot be read as its format says.
    """
    if fmt.kind == "xlsx":
        return _ordered_map(process, _xlsx_chunks(fmt, chunk_rows), workers)
    try:
        return _ordered_map(process, _arrow_chunks(fmt, chunk_rows, block_bytes), workers)
    except _RaggedRows:
        return _ordered_map(process, _python_chunks(fmt, chunk_rows), workers)


def stream(fmt: FileFormat, process: Callable[[Chunk], T], *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
           block_bytes: int = DEFAULT_BLOCK_BYTES, workers: int = 1, tolerant: bool = False,
           first_rows: int | None = None) -> Iterator[T]:
    """Like :func:`scan`, but yield each answer as soon as it is ready, so nothing accumulates.
    With ``first_rows``, pyarrow's reader cuts the first chunk at that many rows (its answer comes sooner).

    CSV is read by pyarrow unless ``tolerant``; a ragged row then raises :class:`RaggedRows`,
    possibly after some answers were yielded: read again with ``tolerant=True`` (Python's reader).

    Raises:
        InputError: when the file cannot be read as its format says.
        RaggedRows: see above.
    """
    if fmt.kind == "xlsx":
        yield from _ordered_iter(process, _xlsx_chunks(fmt, chunk_rows), workers)
    elif tolerant:
        yield from _ordered_iter(process, _python_chunks(fmt, chunk_rows), workers)
    else:
        try:
            yield from _ordered_iter(process, _arrow_chunks(fmt, chunk_rows, block_bytes, first_rows), workers)
        except _RaggedRows:
            raise RaggedRows() from None


def _ordered_map(process: Callable[[Chunk], T], chunks: Iterator[Chunk], workers: int) -> list[T]:
    """``[process(c) for c in chunks]`` with up to ``workers`` chunks in flight."""
    return list(_ordered_iter(process, chunks, workers))


def _ordered_iter(process: Callable[[Chunk], T], chunks: Iterator[Chunk], workers: int) -> Iterator[T]:
    """``process(c) for c in chunks``, in order, with up to ``workers`` chunks in flight."""
    if workers <= 1:
        yield from (process(c) for c in chunks)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scan") as pool:
        pending: deque[Future[T]] = deque()
        try:
            for chunk in chunks:
                pending.append(pool.submit(process, chunk))
                if len(pending) >= workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _arrow_chunks(fmt: FileFormat, chunk_rows: int, block_bytes: int,
                  first_rows: int | None = None) -> Iterator[Chunk]:
    names = list(fmt.columns)
    source: Any = pa.OSFile(str(fmt.path))
    if fmt.compression == "gzip":
        source = pa.CompressedInputStream(source, "gzip")
    encoding = "utf8" if fmt.encoding in ("utf-8", "utf-8-sig") else fmt.encoding
    try:
        reader = pacsv.open_csv(
            source,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=fmt.header_lines, block_size=block_bytes,
                                           encoding=encoding),
            parse_options=pacsv.ParseOptions(delimiter=fmt.delimiter, newlines_in_values=True,
                                              ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
        yield from _grouped(_batches(reader), chunk_rows, first_rows)
    except pa.ArrowInvalid as exc:
        if "CSV parse error" in str(exc) or "Expected" in str(exc):
            raise _RaggedRows() from None
        raise InputError(f"{fmt.path.name} cannot be read as {fmt.label}: {_first_line(exc)}.") from None
    except StopIteration:
        return
    finally:
        source.close()


def _batches(reader: Any) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        yield batch


def _grouped(batches: Iterator[pa.RecordBatch], chunk_rows: int, first_rows: int | None = None) -> Iterator[Chunk]:
    """Cut batches into chunks of ``chunk_rows`` rows (the first of ``first_rows`` when given, the
    last may be shorter), numbered from row 2."""
    pending: list[pa.RecordBatch] = []
    size, next_row = 0, 2
    wanted = first_rows or chunk_rows
    for batch in batches:
        pending.append(batch)
        size += batch.num_rows
        if size < wanted:
            continue
        table = pa.Table.from_batches(pending)
        start = 0
        while size - start >= wanted:
            chunk = _chunk(table.slice(start, wanted), next_row)
            start, next_row = start + wanted, next_row + wanted
            wanted = chunk_rows
            if chunk is not None:
                yield chunk
        pending = table.slice(start).to_batches() if start < size else []
        size -= start
    if pending:
        chunk = _chunk(pa.Table.from_batches(pending), next_row)
        if chunk is not None:
            yield chunk


def _chunk(table: pa.Table, first_row: int) -> Chunk | None:
    """A chunk without its blank rows; None when nothing is left."""
    rows = np.arange(first_row, first_row + table.num_rows, dtype=np.int64)
    blank = _blank_rows(table)
    if blank.any():
        keep = pa.array(~blank)
        table, rows = table.filter(keep), rows[~blank]
    return Chunk(table, rows) if table.num_rows else None


def _blank_rows(table: pa.Table) -> np.ndarray:
    """True for rows whose every cell is empty or whitespace."""
    # Each column after the first is only looked at in the rows still blank (few, usually).
    rows = np.arange(table.num_rows)
    for column in table.columns:
        cells = column if len(rows) == table.num_rows else column.take(pa.array(rows))
        lengths = pc.utf8_length(pc.utf8_trim_whitespace(cells))
        rows = rows[pc.fill_null(lengths, 0).to_numpy() == 0]
        if not len(rows):
            break
    blank = np.zeros(table.num_rows, dtype=bool)
    blank[rows] = True
    return blank


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__


def _python_chunks(fmt: FileFormat, chunk_rows: int) -> Iterator[Chunk]:
    """The tolerant reader: short rows are padded, long rows reported unless the extras are blank."""
    width = len(fmt.columns)
    with _open_text(fmt) as text:
        for _ in range(fmt.header_lines):
            text.readline()
        reader = csv.reader(text, delimiter=fmt.delimiter)
        cells: list[list[str]] = []
        numbers: list[int] = []
        problems: list[Reject] = []
        row = 1
        try:
            for record in reader:
                row += 1
                if len(record) > width and any(cell.strip() for cell in record[width:]):
                    problems.append(Reject(row, fmt.delimiter.join(record)[:200],
                                           f"row has {len(record)} fields but the header has {width}"))
                    continue
                if not any(cell.strip() for cell in record):
                    continue
                cells.append((record + [""] * width)[:width])
                numbers.append(row)
                if len(cells) >= chunk_rows:
                    yield _table_chunk(fmt.columns, cells, numbers, problems)
                    cells, numbers, problems = [], [], []
        except csv.Error as exc:
            raise InputError(f"{fmt.path.name} cannot be read as {fmt.label} near row {row}: {exc}.") from None
        if cells or problems:
            yield _table_chunk(fmt.columns, cells, numbers, problems)


def _open_text(fmt: FileFormat) -> IO[str]:
    if fmt.compression == "gzip":
        return gzip.open(fmt.path, "rt", encoding=fmt.encoding, newline="")
    return open(fmt.path, encoding=fmt.encoding, newline="")


def _table_chunk(columns: tuple[str, ...], cells: list[list[str]], numbers: list[int],
                 problems: list[Reject]) -> Chunk:
    data = {name: pa.array([r[i] for r in cells], pa.string()) for i, name in enumerate(columns)}
    return Chunk(pa.table(data), np.asarray(numbers, dtype=np.int64), problems)


# -- Excel -------------------------------------------------------------------------------------------


def _xlsx_chunks(fmt: FileFormat, chunk_rows: int) -> Iterator[Chunk]:
    workbook, sheet = load_sheet(fmt.path)
    width = len(fmt.columns)
    try:
        rows = sheet.iter_rows(values_only=True)
        first = int(getattr(sheet, "min_row", 1) or 1)
        header_seen = False
        cells: list[list[str]] = []
        numbers: list[int] = []
        for offset, values in enumerate(rows):
            texts = [cell_text(v) for v in values]
            if not header_seen:
                header_seen = any(t.strip() for t in texts)
                continue
            if not any(t.strip() for t in texts):
                continue
            cells.append((texts + [""] * width)[:width])
            numbers.append(first + offset)
            if len(cells) >= chunk_rows:
                yield _table_chunk(fmt.columns, cells, numbers, [])
                cells, numbers = [], []
        if cells:
            yield _table_chunk(fmt.columns, cells, numbers, [])
    finally:
        workbook.close()
