"""Read recipient files: CSV (also gzipped) and Excel ``.xlsx``, every cell as text, in chunks.

:func:`sniff` looks at a file once and settles how to read it: compression and workbook by their
magic bytes, the text encoding (UTF-8, UTF-8 with a byte-order mark, UTF-16 with one, else cp1252,
else Latin-1), the delimiter (``,`` ``;`` tab ``|``), an Excel ``sep=`` first line, and the header.
:func:`scan` then hands the rows to a callback in chunks of bounded size, so a file of a million
rows never sits in memory whole. Phone numbers are never read as numbers.

Row numbers are the ones a spreadsheet shows: the header is row 1, a quoted value that spans several
lines is still one row, and blank rows count but are never passed on.

CSV goes through pyarrow's streaming reader. A row with more or fewer fields than the header makes
pyarrow stop; :func:`scan` then starts again with Python's ``csv`` module, which pads short rows and
reports long ones (see :attr:`Chunk.problems`) so the row numbers stay right.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from dispatcher.errors import InputError
from dispatcher.preflight.rejects import Reject

T = TypeVar("T")

#: Rows handed to the callback at once (about 20-40 MB of text for typical recipient files).
DEFAULT_CHUNK_ROWS = 100_000
#: Bytes pyarrow parses per block.
DEFAULT_BLOCK_BYTES = 4 << 20
#: Delimiters tried, in order of preference when several fit equally well.
DELIMITERS = (",", ";", "\t", "|")

#: Header names (compared without case, accents or punctuation) that hold the phone number.
PHONE_NAMES = ("phone", "phonenumber", "mobile", "mobilephone", "mobilenumber", "msisdn", "to", "number",
               "telefono", "telephone", "telefone", "tel", "movil", "celular", "cell", "cellphone", "mobil",
               "handy", "portable", "telemovel", "gsm", "numero", "recipient", "destination")
#: Header names of an optional per-row country (ISO code) column.
COUNTRY_NAMES = ("country", "countrycode", "pais", "iso", "land", "pays", "paese")
#: Header names of an optional per-row sender column.
SENDER_NAMES = ("from", "sender", "senderid", "remitente")

_SAMPLE_BYTES = 64 << 10
_READ_BYTES = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0"
_CP1252_UNDEFINED = frozenset(b"\x81\x8d\x8f\x90\x9d")


@dataclass(frozen=True, slots=True)
class FileFormat:
    """How to read one file.

    ``header_lines`` is the number of physical lines before the data (an Excel ``sep=`` line and
    the header record); ``columns`` are the header names, made unique and non-empty.
    """

    path: Path
    kind: Literal["csv", "xlsx"]
    compression: Literal["gzip"] | None
    encoding: str
    delimiter: str
    header_lines: int
    columns: tuple[str, ...]

    @property
    def label(self) -> str:
        """A short description for messages, such as ``CSV, cp1252, ';'``."""
        if self.kind == "xlsx":
            return "Excel workbook"
        gz = " gzipped" if self.compression else ""
        return f"CSV{gz}, {self.encoding}, delimiter {self.delimiter!r}"


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


# -- sniffing ----------------------------------------------------------------------------------------


def sniff(path: str | Path) -> FileFormat:
    """Work out how to read ``path``.

    Raises:
        InputError: when the file is empty, binary, an old ``.xls`` workbook, or has no header.
        FileNotFoundError, PermissionError: as ``open`` raises them.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a file.")
    with open(path, "rb") as f:
        magic = f.read(4)
    if not magic:
        raise InputError(f"{path} is empty.")
    if magic.startswith(_ZIP_MAGIC):
        return _sniff_xlsx(path)
    if magic.startswith(_OLE_MAGIC):
        raise InputError(f"{path} is an old Excel .xls workbook: save it as .xlsx or as CSV.")
    compression: Literal["gzip"] | None = "gzip" if magic.startswith(_GZIP_MAGIC) else None
    sample = _read_sample(path, compression)
    if not sample.strip():
        raise InputError(f"{path} is empty.")
    encoding = _detect_encoding(path, compression, sample)
    text = _decode_sample(sample, encoding)
    if _looks_binary(text):
        raise InputError(f"{path} is not a CSV file: it contains binary data.")
    delimiter, skip, body = _excel_sep_line(text)
    delimiter = delimiter or sniff_delimiter(body)
    columns, lines = _header(body, delimiter)
    if not any(columns):
        raise InputError(f"{path} has no header row: the first row must name the columns.")
    return FileFormat(path=path, kind="csv", compression=compression, encoding=encoding, delimiter=delimiter,
                      header_lines=skip + lines, columns=unique_names(columns))


def _open_binary(path: Path, compression: str | None) -> IO[bytes]:
    if compression == "gzip":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _read_sample(path: Path, compression: str | None) -> bytes:
    try:
        with _open_binary(path, compression) as f:
            return f.read(_SAMPLE_BYTES)
    except (OSError, EOFError) as exc:
        raise InputError(f"{path} cannot be read as gzip: {exc}.") from None


def _detect_encoding(path: Path, compression: str | None, sample: bytes) -> str:
    """UTF-16 or UTF-8 by byte-order mark, else UTF-8 if the whole file decodes, else cp1252/Latin-1."""
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in sample:
        raise InputError(f"{path} is not a CSV file: it contains binary data.")
    bom = sample.startswith(codecs.BOM_UTF8)
    if _decodes_as_utf8(path, compression):
        return "utf-8-sig" if bom else "utf-8"
    return "latin-1" if _has_cp1252_holes(path, compression) else "cp1252"


def _blocks(path: Path, compression: str | None) -> Iterator[bytes]:
    try:
        with _open_binary(path, compression) as f:
            while block := f.read(_READ_BYTES):
                yield block
    except (OSError, EOFError) as exc:
        raise InputError(f"{path} cannot be read: {exc}.") from None


def _decodes_as_utf8(path: Path, compression: str | None) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for block in _blocks(path, compression):
            decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _has_cp1252_holes(path: Path, compression: str | None) -> bool:
    """True when the file holds a byte cp1252 leaves undefined (then it must be Latin-1)."""
    return any(not _CP1252_UNDEFINED.isdisjoint(block) for block in _blocks(path, compression))


def _decode_sample(sample: bytes, encoding: str) -> str:
    text = sample.decode(encoding, errors="replace")
    return text.removeprefix("\ufeff")


def _looks_binary(text: str) -> bool:
    """True when control characters (other than tab, CR, LF, FF) make up over 1% of the sample."""
    controls = sum(1 for c in text if unicodedata.category(c) == "Cc" and c not in "\t\r\n\f")
    return controls > max(2, len(text) // 100)


def _excel_sep_line(text: str) -> tuple[str | None, int, str]:
    """Excel's ``sep=;`` first line: ``(delimiter, lines to skip, rest of the sample)``."""
    first, _, rest = text.partition("\n")
    line = first.strip()
    if line.lower().startswith("sep=") and len(line) == 5:
        return line[4], 1, rest
    return None, 0, text


def sniff_delimiter(text: str) -> str:
    """The delimiter among ``, ; tab |`` that splits the sample's rows most consistently.

    A delimiter scores by the share of the following rows that have as many fields as the header
    (at least two); ties go to the more fields, then to the earlier delimiter. One-column files get ``,``.
    """
    lines = _complete_lines(text)
    best, best_score = ",", (0.0, 0)
    for delimiter in DELIMITERS:
        counts = [len(r) for r in csv.reader(io.StringIO(lines, newline=""), delimiter=delimiter) if r][:50]
        if not counts or counts[0] < 2:
            continue
        rest = counts[1:]
        share = sum(1 for c in rest if c == counts[0]) / len(rest) if rest else 1.0
        score = (share, counts[0])
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _complete_lines(text: str) -> str:
    """The sample without its last, possibly cut, line (unless it is the only one)."""
    cut = text.rfind("\n")
    return text[:cut] if cut > 0 else text


def _header(text: str, delimiter: str) -> tuple[list[str], int]:
    """The header fields and the number of physical lines the header record spans."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        for record in reader:
            if any(cell.strip() for cell in record):
                return [cell.strip().removeprefix("\ufeff") for cell in record], reader.line_num
    except csv.Error:
        pass
    return [], 0


def unique_names(names: Iterable[str]) -> tuple[str, ...]:
    """Header names made non-empty (``column 3``) and unique (``name (2)``)."""
    seen: dict[str, int] = {}
    out = []
    for i, name in enumerate(names, start=1):
        base = name or f"column {i}"
        count = seen.get(base, 0) + 1
        seen[base] = count
        out.append(base if count == 1 else f"{base} ({count})")
    return tuple(out)


def _sniff_xlsx(path: Path) -> FileFormat:
    header, _ = _xlsx_header(path)
    if not any(header):
        raise InputError(f"{path} has no header row: the first row of the first sheet must name the columns.")
    return FileFormat(path=path, kind="xlsx", compression=None, encoding="", delimiter="", header_lines=0,
                      columns=unique_names(header))


# -- column names ----------------------------------------------------------------------------------


def normalise_name(name: str) -> str:
    """A header name compared without case, accents, spaces or punctuation: ``Teléfono`` -> ``telefono``."""
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(c for c in decomposed.casefold() if c.isalnum() and not unicodedata.combining(c))


def find_column(columns: Iterable[str], wanted: str | None = None, aliases: Iterable[str] = ()) -> str | None:
    """The column named ``wanted`` (exactly, else ignoring case and accents), or, without ``wanted``,
    the first column whose name matches one of ``aliases`` (earlier aliases win). None if none fits."""
    columns = list(columns)
    if wanted is not None:
        if wanted in columns:
            return wanted
        key = normalise_name(wanted)
        return next((c for c in columns if normalise_name(c) == key), None)
    by_name: dict[str, str] = {}
    for column in columns:
        by_name.setdefault(normalise_name(column), column)
    return next((by_name[a] for a in aliases if a in by_name), None)


def require_column(fmt: FileFormat, wanted: str | None, aliases: Iterable[str], what: str, option: str) -> str:
    """:func:`find_column`, or an error naming the columns the file has.

    Raises:
        InputError: when no column fits.
    """
    found = find_column(fmt.columns, wanted, aliases)
    if found is not None:
        return found
    listing = ", ".join(fmt.columns)
    if wanted is not None:
        raise InputError(f"{fmt.path.name} has no column named {wanted!r}; its columns are: {listing}.")
    raise InputError(f"{fmt.path.name} has no {what} column (its columns are: {listing}); name it with {option}.")


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


def _ordered_map(process: Callable[[Chunk], T], chunks: Iterator[Chunk], workers: int) -> list[T]:
    """``[process(c) for c in chunks]`` with up to ``workers`` chunks in flight."""
    if workers <= 1:
        return [process(c) for c in chunks]
    results: list[T] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scan") as pool:
        pending: deque[Future[T]] = deque()
        try:
            for chunk in chunks:
                pending.append(pool.submit(process, chunk))
                if len(pending) >= workers:
                    results.append(pending.popleft().result())
            while pending:
                results.append(pending.popleft().result())
        finally:
            for future in pending:
                future.cancel()
    return results


def read_all(fmt: FileFormat) -> Chunk:
    """The whole file as one chunk (for small files such as a suppression list import)."""
    chunks = scan(fmt, lambda c: c)
    if not chunks:
        return Chunk(pa.table({c: pa.array([], pa.string()) for c in fmt.columns}), np.zeros(0, dtype=np.int64))
    table = pa.concat_tables([c.table for c in chunks])
    return Chunk(table, np.concatenate([c.rows for c in chunks]), [p for c in chunks for p in c.problems])


def _arrow_chunks(fmt: FileFormat, chunk_rows: int, block_bytes: int) -> Iterator[Chunk]:
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
        yield from _grouped(_batches(reader), chunk_rows)
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


def _grouped(batches: Iterator[pa.RecordBatch], chunk_rows: int) -> Iterator[Chunk]:
    """Join batches into chunks of about ``chunk_rows`` rows, numbered from row 2."""
    pending: list[pa.RecordBatch] = []
    size, next_row = 0, 2
    for batch in batches:
        pending.append(batch)
        size += batch.num_rows
        if size >= chunk_rows:
            chunk = _chunk(pa.Table.from_batches(pending), next_row)
            next_row += size
            pending, size = [], 0
            if chunk is not None:
                yield chunk
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
    blank = np.ones(table.num_rows, dtype=bool)
    for column in table.columns:
        lengths = pc.utf8_length(pc.utf8_trim_whitespace(column))
        blank &= (pc.fill_null(lengths, 0).to_numpy() == 0)
        if not blank.any():
            break
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


def _load_sheet(path: Path) -> Any:
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a damaged or foreign zip
        raise InputError(f"{path} cannot be read as an Excel .xlsx workbook ({type(exc).__name__}).") from None
    return workbook, workbook.worksheets[0] if workbook.worksheets else None


def _xlsx_header(path: Path) -> tuple[list[str], int]:
    workbook, sheet = _load_sheet(path)
    try:
        if sheet is None:
            return [], 0
        for offset, values in enumerate(sheet.iter_rows(values_only=True)):
            cells = [cell_text(v).strip() for v in values]
            if any(cells):
                return cells, offset
        return [], 0
    finally:
        workbook.close()


def _xlsx_chunks(fmt: FileFormat, chunk_rows: int) -> Iterator[Chunk]:
    workbook, sheet = _load_sheet(fmt.path)
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


def cell_text(value: object) -> str:
    """An Excel cell as the text a user sees: whole floats without ``.0``, booleans as TRUE/FALSE."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)
