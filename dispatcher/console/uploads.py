"""Multipart uploads, capped and streamed to disk: a recipient file is never held in memory whole.

The body is counted as it arrives: a ``Content-Length`` over the cap is refused before a byte is
read, and a body that grows past it (chunked, or lying about its length) is cut off there. The
file part lands in a temporary file with the upload's own suffix (``.csv``, ``.csv.gz``,
``.xlsx``), since the loader reads the format from it; :meth:`Upload.close` deletes it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import AsyncGenerator
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


class UploadTooLarge(Exception):
    """The request body exceeds the upload cap."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(limit_bytes)
        self.limit_bytes = limit_bytes

    def __str__(self) -> str:
        return (f"the upload is larger than {self.limit_bytes / 1e6:g} MB; split the file or raise "
                "DISPATCHER_MAX_UPLOAD_MB.")


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


async def _capped(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise UploadTooLarge(limit)
        yield chunk


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


def keep(upload: Upload, directory: Path, stem: str) -> Path:
    """Move the uploaded file into ``directory`` as ``stem`` plus its suffix; returns the new path.

    Raises:
        InputError: when there is no file or it cannot be stored.
    """
    if upload.path is None:
        raise InputError("attach the recipient file in a part named 'file'.")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"{stem}{suffix_of(upload.filename)}"
        shutil.move(str(upload.path), target)
    except OSError as exc:
        raise InputError(f"cannot keep the uploaded file in {directory}: {exc.strerror or exc}.") from None
    upload.path = None
    return target
