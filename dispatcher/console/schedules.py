"""``/api/schedules``: list, add and remove recurring campaigns, as ``dispatcher schedule`` does.

A schedule re-reads its file at every firing, on a worker. The file uploaded with a schedule is
therefore kept in ``DISPATCHER_CONSOLE_DATA_DIR/schedules/`` (share that directory with the
workers, as the compose file does), named after the schedule, and deleted with it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dispatcher.console import scope, uploads
from dispatcher.console.api import (
    _named_as_uploaded,
    _number,
    _received,
    _text,
    known_account,
    preflight_options,
    received_form,
)
from dispatcher.console.auth import TokenInfo
from dispatcher.console.context import JSON, ApiError, Console
from dispatcher.errors import InputError, UnknownItem
from dispatcher.instasent.client import InstasentClient
from dispatcher.preflight.check import check_file
from dispatcher.preflight.result import PreflightOptions
from dispatcher.sending import campaigns
from dispatcher.sending.accounts import AccountBook
from dispatcher.sending.schedules.admin import (
    CurrentCampaign,
    add_schedule,
    remove_schedule,
    schedule_row,
    schedule_rows,
)
from dispatcher.sending.schedules.definition import DEFAULT_GRACE_S, ScheduleDef
from dispatcher.sending.schedules.firing import Firer
from dispatcher.sending.windows import parse_duration


def _accounts(console: Console) -> list[str]:
    """The names of the install's accounts (a schedule's must be one of them)."""
    return AccountBook(console.store.redis, console.store.keys, console.settings).names()


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
        priority=_text(fields, "priority") or "normal",
        account=scope.form_account(fields),
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
            add_schedule(console.schedules, console.entries, definition, known_accounts=_accounts(console))
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


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A schedule row as the API shows it: its file by its name only, as no answer names a server path."""
    return {**row, "file": Path(row["file"]).name}


def _public_rows(console: Console, token: TokenInfo) -> list[dict[str, Any]]:
    """The schedule rows the API shows ``token`` (see :func:`_public`): those of its accounts."""
    if not token.scoped:
        return [_public(row) for row in schedule_rows(console.schedules, store=console.store)]
    rows: list[dict[str, Any]] = []
    for name in scope.schedule_names(console, token):
        try:
            rows.append(_row(console, name))
        except UnknownItem:  # removed while listing
            continue
    return rows


def _row(console: Console, name: str) -> dict[str, Any]:
    """One schedule as the API shows it.

    Raises:
        UnknownItem: when there is no such schedule (404).
    """
    return _public(schedule_row(console.schedules, name, store=console.store))


#: Form fields of an edit, and the definition field each one sets.
_EDITABLE = ("cron", "tz", "every", "overlap", "grace", "window", "days", "expire_after", "text", "text_column",
             "from", "country", "phone_column", "hlr", "no_hlr", "gsm_only", "max_cost", "account", "priority")


def edited(old: ScheduleDef, fields: dict[str, str], file: Path | None) -> ScheduleDef:
    """``old`` with the fields sent changed (an empty value clears an optional one); the file is
    ``file`` when a new one was uploaded. ``cron`` and ``every`` replace each other.

    Raises:
        InputError: for a malformed field, in one sentence.
    """
    unknown = sorted(set(fields) - set(_EDITABLE) - {"name"})
    if unknown:
        raise InputError(f"a schedule has no field {unknown[0]!r}; it takes {', '.join(_EDITABLE)} and a file.")
    options = dict(old.options)
    base = {"text": options.get("text") or "", "text_column": options.get("text_column") or "",
            "from": options.get("sender") or "", "country": options.get("country") or "",
            "phone_column": options.get("phone_column") or "",
            "gsm_only": "1" if options.get("gsm_only") else "",
            "max_cost": "" if options.get("max_cost") is None else repr(options["max_cost"]),
            "cron": old.cron or "", "tz": old.tz, "every": f"{old.every_s:g}s" if old.every_s else "",
            "overlap": old.overlap, "grace": repr(old.grace_s), "window": old.window or "", "days": old.days or "",
            "expire_after": f"{old.expire_after_s:g}s" if old.expire_after_s else "", "priority": old.priority,
            "account": old.account}
    if options.get("hlr") is not None and "hlr" not in fields and "no_hlr" not in fields:
        base["hlr"] = "1" if options["hlr"] else "0"
    merged = {**base, **fields}
    if "cron" in fields and fields["cron"].strip():
        merged["every"] = ""
    elif "every" in fields and fields["every"].strip():
        merged["cron"] = ""
    return definition_from({**merged, "name": old.name}, file if file is not None else Path(old.file))


def routes(console: Console) -> list[Route]:
    """The schedule routes bound to ``console``."""

    def listing(request: Request) -> Response:
        token = console.authorize(request)
        return JSON({"schedules": _public_rows(console, token)})

    def show(request: Request) -> Response:
        token = console.authorize(request)
        scope.schedule(console, token, request.path_params["name"])
        return JSON(_row(console, request.path_params["name"]))

    async def create(request: Request) -> Response:
        token = console.authorize(request)
        upload = await _received(console, request)
        try:
            scope.check_account(token, scope.form_account(upload.fields))
            name = upload.fields.get("name", "").strip()
            _check_replaceable(console, token, name)
            directory = schedule_dir(console)
            definition = definition_from(upload.fields, directory / f"{name}{uploads.suffix_of(upload.filename)}")
            known_account(console, definition.account)
            with _named_as_uploaded(upload):
                await run_in_threadpool(_replace_schedule, console, upload, definition)
        finally:
            upload.close()
        rows = [r for r in _public_rows(console, token) if r["name"] == definition.name]
        return JSON(rows[0] if rows else {"name": definition.name}, status_code=201)

    async def edit(request: Request) -> Response:
        token = console.authorize(request)
        name = request.path_params["name"]
        old = scope.schedule(console, token, name)  # 404 for an unknown name
        upload = await _received_maybe(console, request)
        try:
            if "account" in upload.fields:
                scope.check_account(token, scope.form_account(upload.fields))
                known_account(console, scope.form_account(upload.fields))
            if upload.path is not None:
                target = schedule_dir(console) / f"{name}{uploads.suffix_of(upload.filename)}"
                definition = edited(old, upload.fields, target)
                with _named_as_uploaded(upload):
                    await run_in_threadpool(_replace_schedule, console, upload, definition)
            else:
                definition = edited(old, upload.fields, None)
                await run_in_threadpool(partial(add_schedule, console.schedules, console.entries, definition,
                                                known_accounts=_accounts(console)))
        finally:
            upload.close()
        return JSON(await run_in_threadpool(_row, console, name))

    def pause(request: Request) -> Response:
        token = console.authorize(request)
        name, action = request.path_params["name"], request.path_params["action"]
        if action not in ("pause", "resume"):
            raise ApiError(404, f"no action {action!r}: use pause, resume or run.")
        scope.schedule(console, token, name)
        console.schedules.set_paused(name, action == "pause")
        return JSON(_row(console, name))

    def run_now(request: Request) -> Response:
        token = console.authorize(request)
        name = request.path_params["name"]
        scope.schedule(console, token, name)
        settings = console.settings
        firer = Firer(settings=settings, schedules=console.schedules, store=console.store, ops=console.ops,
                      enqueuer=console.enqueuer, client_factory=lambda: InstasentClient.from_settings(settings))
        firing = firer.fire(name, manual=True)
        return JSON({"firing": firing.to_json() if firing else None, "schedule": _row(console, name)})

    def remove(request: Request) -> Response:
        token = console.authorize(request)
        who = token.name
        name = request.path_params["name"]
        definition = scope.schedule(console, token, name)  # 404 for an unknown name
        current = request.query_params.get("current")
        try:
            done = remove_schedule(
                console.schedules, console.entries, name, store=console.store, current=current,
                cancel=lambda cid: campaigns.cancel(console.store, console.ops, cid, console.settings.campaign_ttl_s,
                                                    by=who))
        except CurrentCampaign as exc:
            raise ApiError(409, str(exc), current_campaign=exc.campaign) from None
        kept = Path(definition.file)
        if kept.parent == schedule_dir(console):
            kept.unlink(missing_ok=True)
        return JSON({"removed": name, "current": done})

    return [
        Route("/api/schedules", listing, methods=["GET"]),
        Route("/api/schedules", create, methods=["POST"]),
        Route("/api/schedules/{name}", show, methods=["GET"]),
        Route("/api/schedules/{name}", edit, methods=["PATCH"]),
        Route("/api/schedules/{name}", remove, methods=["DELETE"]),
        Route("/api/schedules/{name}/run", run_now, methods=["POST"]),
        Route("/api/schedules/{name}/{action:str}", pause, methods=["POST"]),
    ]


def _check_replaceable(console: Console, token: TokenInfo, name: str) -> None:
    """A scoped token may add a schedule, but not replace another account's of the same name.

    Raises:
        ApiError: 403 when a schedule of that name belongs to an account outside the token's scope
            (its name was given by the caller; the answer says only that the name is taken).
    """
    if not token.scoped or not name:
        return
    try:
        existing = console.schedules.get(name)
    except UnknownItem:
        return
    if not token.sees(existing.account):
        raise ApiError(403, f"token {token.name!r} may not use the schedule name {name[:70]!r}; choose another.")


#: Largest edit without a file (bytes of URL-encoded fields).
_MAX_EDIT = 64 * 1024


async def _received_maybe(console: Console, request: Request) -> uploads.Upload:
    """The fields of an edit, as multipart (with or without a new file) or URL-encoded.

    Raises:
        ApiError: as :func:`dispatcher.console.api._received` for a multipart body.
    """
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        return await received_form(console, request)
    try:
        body = await uploads.read_capped(request, _MAX_EDIT,
                                         uploads.TooLarge("an edit without a file is at most 64 KB."))
    except uploads.TooLarge as exc:
        raise ApiError(413, str(exc)) from None
    return uploads.Upload(fields={k: v for k, v in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)})
