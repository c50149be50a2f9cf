"""Request bodies, capped and streamed: a recipient file is never held in memory whole.

Every body is counted as it arrives: a ``Content-Length`` over the cap is refused before a byte
is read, and a body that grows past it (chunked, or lying about its length) is cut off there
(:func:`read_capped` for small JSON bodies, :func:`receive` for multipart uploads). The file part
lands in a temporary file with the upload's own suffix (``.csv``, ``.csv.gz``, ``.xlsx``), since
the loader reads the format from it; :meth:`Upload.close` deletes it. :func:`measure` then caps
what the file expands to (decompressed bytes, rows) before anything parses it.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from dispatcher.errors import InputError

#: Bytes copied at a time from the parser's spool to the named file.
_CHUNK = 1 << 20
#: Suffixes a recipient file may have, longest first.
SUFFIXES = (".csv.gz", ".csv", ".txt", ".tsv", ".xlsx", ".gz")


#: Members a workbook (a zip) may hold before it is refused unread; a real .xlsx has a few dozen.
_MAX_ZIP_MEMBERS = 10_000
#: Worksheet row tags, counted to cap an .xlsx's rows (``<rowBreaks`` is no row).
_ROW_TAGS = (b"<row ", b"<row>")


class TooLarge(Exception):
    """A request body, or what an upload expands to, exceeds a cap (answered 413)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UploadTooLarge(TooLarge):
    """The request body exceeds the upload cap."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"the upload is larger than {limit_bytes / 1e6:g} MB; split the file or raise "
                         "DISPATCHER_MAX_UPLOAD_MB.")
        self.limit_bytes = limit_bytes


@dataclass
class Upload:
    """A parsed multipart request: the text fields and the file part saved on disk (or None)."""

    fields: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    filename: str = ""

    def close(self) -> None:
        """Delete the saved file."""
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self.path = None


def suffix_of(filename: str) -> str:
    """The recipient-file suffix of ``filename`` (``.csv`` when it has none we know)."""
    lower = filename.lower()
    return next((s for s in SUFFIXES if lower.endswith(s)), ".csv")


def safe_filename(filename: str) -> str:
    """``filename`` without directories or unusual characters, for names and messages."""
    base = os.path.basename(filename.replace("\\", "/"))
    return re.sub(r"[^\w.\- ]", "_", base)[:120] or "upload.csv"


async def _capped(request: Request, limit: int, too_large: TooLarge | None = None) -> AsyncGenerator[bytes, None]:
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise too_large or UploadTooLarge(limit)
        yield chunk


async def read_capped(request: Request, limit_bytes: int, too_large: TooLarge) -> bytes:
    """The whole body of ``request``, read only while it stays within ``limit_bytes``.

    The ``Content-Length`` header is never trusted to bound the read (a chunked body has none):
    the bytes are counted as they arrive, and the read stops at the first byte over the cap.

    Raises:
        TooLarge: ``too_large``, when the body is, or declares to be, longer than the cap.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit_bytes:
        raise too_large
    chunks = [chunk async for chunk in _capped(request, limit_bytes, too_large)]
    return b"".join(chunks)


async def receive(request: Request, limit_bytes: int, file_field: str = "file") -> Upload:
    """Parse a ``multipart/form-data`` request of at most ``limit_bytes``.

    Raises:
        UploadTooLarge: when the body is (or declares to be) larger than the cap.
        InputError: when the body is not multipart form data or is malformed.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit_bytes:
        raise UploadTooLarge(limit_bytes)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InputError("send the file and the options as multipart/form-data, the file in a part named 'file'.")
    parser = MultiPartParser(request.headers, _capped(request, limit_bytes), max_files=1, max_fields=64)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InputError(f"the form data is malformed: {exc.message}") from None
    upload = Upload()
    try:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key == file_field:
                    upload.filename = safe_filename(value.filename or "upload.csv")
                    upload.path = await _save(value, suffix_of(upload.filename))
                await value.close()
            else:
                upload.fields[key] = value
    except BaseException:
        upload.close()
        raise
    return upload


async def _save(part: UploadFile, suffix: str) -> Path:
    handle, name = tempfile.mkstemp(prefix="dispatcher-upload-", suffix=suffix)
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            while chunk := await part.read(_CHUNK):
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


#: Bytes a file may expand to whatever its compression ratio (a tiny file may compress very well).
RATIO_FLOOR_BYTES = 1_000_000


def measure(path: Path, shown_as: str, max_bytes: int, max_rows: int, max_ratio: float) -> None:
    """Refuse a saved upload that expands past ``max_bytes``, or more than ``max_ratio`` times its
    own size once past :data:`RATIO_FLOOR_BYTES`, or holds more than ``max_rows`` rows.

    The file is read as the loader will read it, by its first bytes: a gzip stream is inflated, a
    zip (.xlsx) has every member inflated, anything else is read as it is; nothing is kept, so
    memory stays at one chunk. Rows are counted as line ends (CSV) or row tags (worksheets), less
    one header row: a quoted line break counts as a row, which errs on the side of refusing.
    ``shown_as`` is the user's file name, used in the sentences instead of the temporary path.
    Blocking; run it in a thread.

    Raises:
        TooLarge: over either cap.
        InputError: a gzip or zip stream that cannot be read.
    """
    with open(path, "rb") as f:
        magic = f.read(4)
    ratio_cap = max(RATIO_FLOOR_BYTES, int(path.stat().st_size * max_ratio))
    row_marks: tuple[bytes, ...]
    if magic.startswith(b"PK"):
        blocks, row_marks = _zip_blocks(path, shown_as), _ROW_TAGS
    elif magic.startswith(b"\x1f\x8b"):
        blocks, row_marks = _gzip_blocks(path, shown_as), (b"\n",)
    else:
        blocks, row_marks = _plain_blocks(path), (b"\n",)
    expanded = rows = 0
    tail = b""
    for block, counts_rows in blocks:
        expanded += len(block)
        if expanded > max_bytes:
            raise TooLarge(f"{shown_as} expands to more than {max_bytes / 1e6:g} MB; split the file or raise "
                           "DISPATCHER_MAX_UPLOAD_EXPANDED_MB.")
        if expanded > ratio_cap:
            raise TooLarge(f"{shown_as} expands more than {max_ratio:g} times, as no list of phone numbers does; "
                           "send it uncompressed or raise DISPATCHER_MAX_UPLOAD_RATIO.")
        if counts_rows:
            # A mark cut in two by a block boundary is seen whole in the tail of one plus the next.
            window = tail + block
            rows += sum(window.count(mark) for mark in row_marks) - sum(tail.count(mark) for mark in row_marks)
            tail = block[-8:]
        if rows - 1 > max_rows:
            raise TooLarge(f"{shown_as} has more than {max_rows:,} rows; split the file or raise "
                           "DISPATCHER_MAX_UPLOAD_ROWS.")


def _plain_blocks(path: Path) -> Iterator[tuple[bytes, bool]]:
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            yield block, True


def _gzip_blocks(path: Path, shown_as: str) -> Iterator[tuple[bytes, bool]]:
    try:
        with gzip.open(path, "rb") as f:
            while block := f.read(_CHUNK):
                yield block, True
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{shown_as} cannot be read as gzip ({type(exc).__name__}).") from None


def _zip_blocks(path: Path, shown_as: str) -> Iterator[tuple[bytes, bool]]:
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > _MAX_ZIP_MEMBERS:
                raise InputError(f"{shown_as} holds {len(members):,} files; an .xlsx workbook holds a few dozen.")
            for member in members:
                sheet = member.filename.startswith("xl/worksheets/") and member.filename.endswith(".xml")
                with archive.open(member) as f:
                    while block := f.read(_CHUNK):
                        yield block, sheet
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
        raise InputError(f"{shown_as} cannot be read as an Excel .xlsx workbook ({type(exc).__name__}).") from None
