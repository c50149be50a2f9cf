"""``/api/schedules``: list, add and remove recurring campaigns, as ``dispatcher schedule`` does.

A schedule re-reads its file at every firing, on a worker. The file uploaded with a schedule is
therefore kept in ``DISPATCHER_CONSOLE_DATA_DIR/schedules/`` (share that directory with the
workers, as the compose file does), named after the schedule, and deleted with it.
"""

from __future__ import annotations

from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dispatcher.console import uploads
from dispatcher.console.api import _number, _received, _text, preflight_options
from dispatcher.console.context import JSON, Console
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


def routes(console: Console) -> list[Route]:
    """The schedule routes bound to ``console``."""

    def listing(request: Request) -> Response:
        console.authorize(request)
        return JSON({"schedules": schedule_rows(console.schedules)})

    async def create(request: Request) -> Response:
        console.authorize(request)
        upload = await _received(console, request)
        try:
            name = upload.fields.get("name", "").strip()
            directory = schedule_dir(console)
            definition = definition_from(upload.fields, directory / f"{name}{uploads.suffix_of(upload.filename)}")
            uploads.keep(upload, directory, name)
            await run_in_threadpool(add_schedule, console.schedules, console.entries, definition)
        finally:
            upload.close()
        rows = [r for r in schedule_rows(console.schedules) if r["name"] == definition.name]
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

