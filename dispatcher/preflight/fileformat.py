"""What a recipient file is, worked out once: :func:`sniff` and the columns it names.

:func:`sniff` settles how to read a file: compression and workbook by their magic bytes, the text
encoding (UTF-8, UTF-8 with a byte-order mark, UTF-16 with one, else cp1252, else Latin-1), the
delimiter (``,`` ``;`` tab ``|``), an Excel ``sep=`` first line, and the header.
:func:`find_column` and :func:`require_column` then pick the phone, country, sender and text columns
by name. :mod:`dispatcher.preflight.loader` reads the rows.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from dispatcher.errors import InputError

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


# -- Excel -----------------------------------------------------------------------------------------


def load_sheet(path: Path) -> Any:
    """``(workbook, first sheet or None)``, read-only; the caller closes the workbook.

    Raises:
        InputError: when the file is not a readable ``.xlsx`` workbook.
    """
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a damaged or foreign zip
        raise InputError(f"{path} cannot be read as an Excel .xlsx workbook ({type(exc).__name__}).") from None
    return workbook, workbook.worksheets[0] if workbook.worksheets else None


def _xlsx_header(path: Path) -> tuple[list[str], int]:
    workbook, sheet = load_sheet(path)
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
