"""``/api/schedules``: list, add and remove recurring campaigns, as ``dispatcher schedule`` does.

A schedule re-reads its file at every firing, on a worker. The file uploaded with a schedule is
therefore kept in ``DISPATCHER_CONSOLE_DATA_DIR/schedules/`` (share that directory with the
workers, as the compose file does), named after the schedule, and deleted with it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dispatcher.console import uploads
from dispatcher.console.api import _named_as_uploaded, _number, _received, _text, preflight_options
from dispatcher.console.context import JSON, Console
from dispatcher.errors import InputError, UnknownItem
from dispatcher.preflight.check import check_file
from dispatcher.preflight.result import PreflightOptions
from dispatcher.sending.schedules.admin import add_schedule, remove_schedule, schedule_rows
from dispatcher.sending.schedules.definition import DEFAULT_GRACE_S, ScheduleDef
from dispatcher.sending.windows import parse_duration


def schedule_dir(console: Console) -> Path:
    """Where uploaded schedule files are kept (absolute, so workers elsewhere find the same path)."""
    return (Path(console.settings.console_data_dir) / "schedules").resolve()


def definition_from(fields: dict[str, str], file: Path) -> ScheduleDef:
    """A schedule from form fields: ``name``, ``cron`` + ``tz`` or ``every``, ``overlap``, ``grace``,
    and the submit options of ``POST /api/campaigns``.

    Raises:
        InputError: for a malformed field, in one sentence.
    """
    options = preflight_options(fields)
    every = _text(fields, "every")
    expire_after = _text(fields, "expire_after")
    grace = _number(fields, "grace")
    return ScheduleDef(
        name=fields.get("name", "").strip(), file=str(file), cron=_text(fields, "cron"),
        tz=_text(fields, "tz") or "UTC", every_s=parse_duration(every) if every else None,
        options={"text": options.text, "text_column": options.text_column, "sender": options.sender,
                 "country": options.country, "phone_column": options.phone_column, "hlr": options.hlr,
                 "gsm_only": options.gsm_only, "max_cost": options.max_cost},
        window=_text(fields, "window"), days=_text(fields, "days"),
        expire_after_s=parse_duration(expire_after) if expire_after else None,
        overlap=_text(fields, "overlap") or "skip", grace_s=DEFAULT_GRACE_S if grace is None else grace,
    ).validated()


def _replace_schedule(console: Console, upload: uploads.Upload, definition: ScheduleDef) -> None:
    """Store ``definition`` with the uploaded file, all or nothing on disk.

    The file is checked where it was saved, then copied next to its final place under a temporary
    name and renamed over it (one atomic step on one file system). The file it replaces is kept
    aside (a hard link) until the schedule is stored, and put back if storing fails; a previous
    file under another suffix (``s1.csv`` replaced by ``s1.xlsx``) is deleted only once the new
    schedule is stored. Blocking: run it in a thread.

    Raises:
        InputError: a file the preflight cannot use, or one that cannot be stored; nothing on
            disk has changed then.
        RedisError: Redis away while storing; nothing on disk has changed then.
    """
    assert upload.path is not None
    check_file(upload.path, PreflightOptions(**definition.options))
    final = Path(definition.file)
    directory = final.parent
    try:
        old = console.schedules.get(definition.name)
    except UnknownItem:
        old = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkstemp(prefix=f".{definition.name}.", suffix=".part", dir=directory)[1])
    except OSError as exc:
        raise InputError(f"cannot keep the uploaded file in the console's data directory: "
                         f"{exc.strerror or type(exc).__name__}.") from None
    aside: Path | None = None
    try:
        try:
            shutil.copyfile(upload.path, staged)
            if final.exists():
                aside = directory / f"{staged.name}.previous"
                os.link(final, aside)
            os.replace(staged, final)
        except OSError as exc:
            raise InputError(f"cannot keep the uploaded file in the console's data directory: "
                             f"{exc.strerror or type(exc).__name__}.") from None
        try:
            add_schedule(console.schedules, console.entries, definition)
        except BaseException:
            if aside is not None:
                os.replace(aside, final)
                aside = None
            else:
                final.unlink(missing_ok=True)
            raise
    finally:
        staged.unlink(missing_ok=True)
        if aside is not None:
            aside.unlink(missing_ok=True)
    if old is not None:
        previous = Path(old.file)
        if previous != final and previous.parent == directory:
            previous.unlink(missing_ok=True)


def _public_rows(console: Console) -> list[dict[str, Any]]:
    """The schedule rows the API shows: each file by its name only, as no answer names a server path."""
    return [{**row, "file": Path(row["file"]).name} for row in schedule_rows(console.schedules)]


def routes(console: Console) -> list[Route]:
    """The schedule routes bound to ``console``."""

    def listing(request: Request) -> Response:
        console.authorize(request)
        return JSON({"schedules": _public_rows(console)})

    async def create(request: Request) -> Response:
        console.authorize(request)
        upload = await _received(console, request)
        try:
            name = upload.fields.get("name", "").strip()
            directory = schedule_dir(console)
            definition = definition_from(upload.fields, directory / f"{name}{uploads.suffix_of(upload.filename)}")
            with _named_as_uploaded(upload):
                await run_in_threadpool(_replace_schedule, console, upload, definition)
        finally:
            upload.close()
        rows = [r for r in _public_rows(console) if r["name"] == definition.name]
        return JSON(rows[0] if rows else {"name": definition.name}, status_code=201)

    def remove(request: Request) -> Response:
        console.authorize(request)
        name = request.path_params["name"]
        definition = console.schedules.get(name)  # 404 for an unknown name
        remove_schedule(console.schedules, console.entries, name)
        kept = Path(definition.file)
        if kept.parent == schedule_dir(console):
            kept.unlink(missing_ok=True)
        return JSON({"removed": name})

    return [
        Route("/api/schedules", listing, methods=["GET"]),
        Route("/api/schedules", create, methods=["POST"]),
        Route("/api/schedules/{name}", remove, methods=["DELETE"]),
    ]

