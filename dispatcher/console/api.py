"""The campaign API: preflight, submit, list, status, pause/resume/cancel, report and rejects.

Every route calls the same library functions as the command line (``sending.submission``,
``sending.campaigns``, ``sending.report``), so the validation, the refusals and the JSON shapes
are the CLI's. Blocking work (Redis, Instasent, pandas) runs in the thread pool, off the loop.
A preflight and a submit stream the uploaded file in bounded memory; ``POST /api/campaigns``
answers once the list is loaded (its batches are sent while it loads). The upload is deleted
then, so a console stopped mid-load leaves an ``interrupted`` campaign that cannot be resumed
from its file: ``dispatcher cancel ID`` drops what was stored.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from dispatcher import money
from dispatcher.console import scope, uploads
from dispatcher.console.context import JSON, ApiError, Console
from dispatcher.errors import BudgetExceeded, DispatcherError, InputError
from dispatcher.preflight.result import PreflightOptions, PreflightResult, check_budget
from dispatcher.schema.names import DEFAULT_ACCOUNT
from dispatcher.sending import campaigns, health, submission
from dispatcher.sending.accounts import AccountBook
from dispatcher.sending.pace import lane_limit, pace_per_s, read_series
from dispatcher.sending.report import build_report, rejects_page, write_campaign_rejects, write_report
from dispatcher.sending.submission import SubmitOptions
from dispatcher.sending.summary import campaign_summary

#: Campaigns per page of ``GET /api/campaigns`` unless ``limit`` says otherwise, and the most allowed.
PAGE = 20
MAX_PAGE = 200
#: Rejects per page of ``GET /api/campaigns/{cid}/rejects`` unless ``limit`` says otherwise, and the most allowed.
REJECTS_PAGE = 1000
MAX_REJECTS_PAGE = 10_000
_TRUE = {"1", "true", "yes", "on"}


#: Report formats the API serves, with their media types.
_REPORT_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet",
                 "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}

def truthy(value: str | None) -> bool:
    """A form field's boolean: ``1``, ``true``, ``yes`` or ``on`` (any case)."""
    return (value or "").strip().lower() in _TRUE


def _text(fields: dict[str, str], name: str) -> str | None:
    value = fields.get(name, "").strip()
    return value or None


def _number(fields: dict[str, str], name: str) -> float | None:
    raw = _text(fields, name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"{name} must be a number, got {raw!r}.") from None
    if not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {raw!r}.")
    return value


def preflight_options(fields: dict[str, str]) -> PreflightOptions:
    """The preflight options of a form: the CLI's option names without dashes (``from``, ``no_hlr``...).

    Raises:
        InputError: for malformed or contradictory options.
    """
    hlr: bool | None
    if "hlr" in fields:
        hlr = truthy(fields["hlr"])
    elif "no_hlr" in fields:
        hlr = not truthy(fields["no_hlr"])
    else:  # as the CLI in a script: lookups estimated, paid for only when free (all cached)
        hlr = None
    return PreflightOptions(text=_text(fields, "text"), text_column=_text(fields, "text_column"),
                            sender=_text(fields, "from"), country=_text(fields, "country"),
                            phone_column=_text(fields, "phone_column"), hlr=hlr,
                            gsm_only=truthy(fields.get("gsm_only")),
                            max_cost=_number(fields, "max_cost"),
                            account=_text(fields, "account") or DEFAULT_ACCOUNT).validated()


def known_account(console: Console, name: str) -> None:
    """Refuse an account the install does not have, before any file is read (``default`` is
    always known: without ``INSTASENT_TOKEN`` its preflight says so, as before accounts).

    Raises:
        ApiError: 400 naming the command that lists the accounts.
    """
    if name != DEFAULT_ACCOUNT and name not in AccountBook(console.store.redis, console.store.keys,
                                                           console.settings).names():
        raise ApiError(400, f"no account is named {name[:70]!r}: see dispatcher account list.")


def submit_options(fields: dict[str, str], filename: str) -> SubmitOptions:
    """The submit options of a form (``name`` defaults to the uploaded file's name).

    Raises:
        InputError: for malformed or contradictory options.
    """
    return SubmitOptions(preflight_options(fields), name=_text(fields, "name") or filename,
                         window=_text(fields, "window"), days=_text(fields, "days"),
                         expire_after=_text(fields, "expire_after"),
                         keep_columns=_text(fields, "keep_columns"),
                         priority=_text(fields, "priority")).validated()


async def _received(console: Console, request: Request) -> uploads.Upload:
    """The upload of ``request``, within every cap: body bytes, expanded bytes and rows.

    Raises:
        ApiError: 413 over a cap, 400 a malformed form or no file part, 422 a file that cannot be
            inflated.
    """
    upload = await received_form(console, request)
    if upload.path is None:
        upload.close()
        raise ApiError(400, "attach the recipient file in a multipart part named 'file'.")
    return upload


async def received_form(console: Console, request: Request) -> uploads.Upload:
    """The multipart form of ``request`` within the body cap, its file (when it has one) checked
    against the expanded-size, row and ratio caps.

    Raises:
        ApiError: 413 over a cap, 400 a malformed form, 422 a file that cannot be inflated.
    """
    try:
        upload = await uploads.receive(request, console.upload_limit_bytes)
    except uploads.TooLarge as exc:
        raise ApiError(413, str(exc)) from None
    except InputError as exc:
        raise ApiError(400, str(exc)) from None
    if upload.path is not None:
        await measured(console, upload)
    return upload


async def measured(console: Console, upload: uploads.Upload) -> None:
    """Check an uploaded file against the expanded-size, row and ratio caps (deleted when over one).

    Raises:
        ApiError: 413 over a cap.
    """
    assert upload.path is not None
    settings = console.settings
    try:
        await run_in_threadpool(uploads.measure, upload.path, upload.filename,
                                int(settings.max_upload_expanded_mb * 1_000_000), settings.max_upload_rows,
                                settings.max_upload_ratio)
    except uploads.TooLarge as exc:
        upload.close()
        raise ApiError(413, str(exc)) from None
    except BaseException:
        upload.close()
        raise


@contextlib.contextmanager
def _named_as_uploaded(upload: uploads.Upload) -> Iterator[None]:
    """Say the user's file name, never our temporary path, in a refusal raised inside.

    Raises:
        DispatcherError: the one raised inside (same type, so same status), its sentence with
            every form of the temporary path replaced by the uploaded file's name.
    """
    path = upload.path
    try:
        yield
    except DispatcherError as exc:
        if path is not None:
            exc.message = scrub_path(exc.message, path, upload.filename)
            if exc.args and isinstance(exc.args[0], str):
                exc.args = (scrub_path(exc.args[0], path, upload.filename), *exc.args[1:])
        raise


def scrub_path(message: str, path: Path, name: str) -> str:
    """``message`` with ``path`` (in full, resolved, or its bare file name) replaced by ``name``."""
    for form in sorted({str(path), str(path.resolve()), path.name}, key=len, reverse=True):
        message = message.replace(form, name)
    return message


async def _preflight(console: Console, upload: uploads.Upload, options: PreflightOptions) -> PreflightResult:
    assert upload.path is not None
    redis_client = console.store.redis
    with _named_as_uploaded(upload):
        result = await run_in_threadpool(partial(submission.preflight, upload.path, options,
                                                 settings=console.settings, redis=redis_client))
    result.file = upload.filename  # the user's name for the file, not our temporary path
    return result


def _refused(console: Console, exc: BudgetExceeded, result: PreflightResult) -> ApiError:
    return ApiError(422, str(exc), preflight=preflight_answer(console, result))


def preflight_answer(console: Console, result: PreflightResult) -> dict[str, Any]:
    """The preflight as the API answers it: its rejects capped, every money figure a decimal string
    (totals in the currency's exponent, unit prices with up to 4 decimals) and ``currency_exponent``."""
    body = money.as_strings(result.to_json(max_rejects=console.settings.max_answer_rejects), result.currency)
    assert isinstance(body, dict)
    return {**body, "currency_exponent": money.exponent(result.currency)}


def _authorize_preflight(console: Console, request: Request, options: PreflightOptions) -> None:
    """A preflight changes nothing, but one that pays for HLR lookups spends money: admins only.

    Raises:
        ApiError: 403 when a viewer asks for paid lookups.
    """
    if options.hlr:
        console.authorize(request, change=True)


def routes(console: Console) -> list[Route]:
    """The ``/api/...`` campaign routes bound to ``console``."""

    async def preflight(request: Request) -> Response:
        # Checks a file and changes nothing, so a viewer may; but paid lookups (hlr=1) are a change.
        token = console.authorize(request, change=False)
        upload = await _received(console, request)
        try:
            scope.check_account(token, scope.form_account(upload.fields))
            options = preflight_options(upload.fields)
            known_account(console, options.account)
            _authorize_preflight(console, request, options)
            result = await _preflight(console, upload, options)
            try:
                check_budget(result, options.max_cost)
            except BudgetExceeded as exc:
                raise _refused(console, exc, result) from None
            return JSON(preflight_answer(console, result))
        finally:
            upload.close()

    async def create(request: Request) -> Response:
        token = console.authorize(request)
        upload = await _received(console, request)
        try:
            scope.check_account(token, scope.form_account(upload.fields))
            options = submit_options(upload.fields, upload.filename)
            known_account(console, options.preflight.account)
            assert upload.path is not None
            counted: list[PreflightResult] = []  # the preflight, for a refusal's answer
            try:
                with _named_as_uploaded(upload):
                    campaign_id, _, _ = await run_in_threadpool(
                        partial(submission.submit, console.store, console.ops, console.enqueuer, console.settings,
                                upload.path, options, shown_as=upload.filename, on_counted=counted.append))
            except BudgetExceeded as exc:
                if not counted:  # HLR lookups refused before the count ended: no preflight to show
                    raise
                raise _refused(console, exc, counted[0]) from None
            body = await run_in_threadpool(campaigns.status, console.store, campaign_id, console.settings)
            return JSON(body, status_code=201)
        finally:
            upload.close()

    def listing(request: Request) -> Response:
        token = console.authorize(request)
        offset = _int_param(request, "offset", 0, 0, 10**9)
        limit = _int_param(request, "limit", PAGE, 1, MAX_PAGE)
        infos, total = scope.campaigns_page(console, token, limit, offset)
        limit_per_s, source = lane_limit(console.store, console.settings)
        workers = len(health.WorkerRegistry(console.store.redis, console.store.keys).alive())
        shares = campaigns.lane_shares(console.store, infos)
        return JSON({
            "campaigns": [campaigns.listed(console.store, i, workers, shares) for i in infos],
            "offset": offset, "limit": limit,
            "total": total, "pace_limit_per_s": limit_per_s, "pace_limit_source": source,
            "pace": {i.id: pace_per_s(read_series(console.store, i.id, last=10)) for i in infos},
        })

    def show(request: Request) -> Response:
        token = console.authorize(request)
        scope.campaign(console, token, request.path_params["cid"])
        return JSON(campaigns.status(console.store, request.path_params["cid"], console.settings))

    def act(request: Request) -> Response:
        token = console.authorize(request)
        who = token.name
        campaign_id, action = request.path_params["cid"], request.path_params["action"]
        if action not in ("pause", "resume", "cancel"):
            raise ApiError(404, f"no action {action!r}: use pause, resume or cancel.")
        scope.campaign(console, token, campaign_id)
        if action == "pause":
            campaigns.pause(console.store, campaign_id, by=who)
        elif action == "resume":
            campaigns.resume(console.store, console.ops, console.enqueuer, campaign_id, by=who)
        else:
            campaigns.cancel(console.store, console.ops, campaign_id, console.settings.campaign_ttl_s, by=who)
        return JSON(campaigns.status(console.store, campaign_id, console.settings))

    def report(request: Request) -> Response:
        token = console.authorize(request)
        campaign_id = request.path_params["cid"]
        kind = request.query_params.get("format", "csv").lower()
        if kind not in _REPORT_TYPES:
            raise ApiError(400, f"format is csv, xlsx or parquet, got {kind!r}.")
        scope.campaign(console, token, campaign_id)
        frame = build_report(console.store, campaign_id)
        handle, name = tempfile.mkstemp(prefix="dispatcher-report-", suffix=f".{kind}")
        os.close(handle)
        path = Path(name)
        try:
            write_report(frame, path)  # the CLI's writer: CSV for scripts, real .xlsx, or Parquet
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return FileResponse(path, media_type=_REPORT_TYPES[kind], filename=f"campaign-{campaign_id}.{kind}",
                            background=BackgroundTask(_unlink, path))

    def rejects(request: Request) -> Response:
        token = console.authorize(request)
        campaign_id = request.path_params["cid"]
        offset = _int_param(request, "offset", 0, 0, 10**9)
        limit = _int_param(request, "limit", REJECTS_PAGE, 1, MAX_REJECTS_PAGE)
        scope.campaign(console, token, campaign_id)  # 404 for an unknown campaign, not an empty list
        kind = request.query_params.get("format")
        if kind is not None:
            return _rejects_file(console, campaign_id, kind.lower())
        page = rejects_page(console.store, campaign_id, offset, limit)
        return JSON({"total": page.total, "reasons": page.reasons, "offset": offset, "limit": limit,
                     "rejects": page.rows})

    def summary(request: Request) -> Response:
        token = console.authorize(request)
        scope.campaign(console, token, request.path_params["cid"])
        return JSON(campaign_summary(console.store, request.path_params["cid"]))

    def series(request: Request) -> Response:
        token = console.authorize(request)
        campaign_id = request.path_params["cid"]
        scope.campaign(console, token, campaign_id)
        samples = read_series(console.store, campaign_id)
        return JSON({"fields": ["t", "sent", "failed", "delivered", "undelivered", "processed"],
                             "samples": samples, "pace_per_s": pace_per_s(samples[-10:]),
                             "pace_limit_per_s": lane_limit(console.store, console.settings)[0]})

    return [
        Route("/api/preflight", preflight, methods=["POST"]),
        Route("/api/campaigns", create, methods=["POST"]),
        Route("/api/campaigns", listing, methods=["GET"]),
        # The path parameter keeps its published name (the OpenAPI spec and its clients say cid).
        Route("/api/campaigns/{cid}", show, methods=["GET"]),
        Route("/api/campaigns/{cid}/report", report, methods=["GET"]),
        Route("/api/campaigns/{cid}/rejects", rejects, methods=["GET"]),
        Route("/api/campaigns/{cid}/summary", summary, methods=["GET"]),
        Route("/api/campaigns/{cid}/series", series, methods=["GET"]),
        Route("/api/campaigns/{cid}/{action}", act, methods=["POST"]),
    ]


def _rejects_file(console: Console, campaign_id: str, kind: str) -> Response:
    """The campaign's rejected rows as a ``csv``, ``xlsx`` or ``parquet`` download.

    Raises:
        ApiError: 400 for another format.
    """
    if kind not in _REPORT_TYPES:
        raise ApiError(400, f"format is csv, xlsx or parquet, got {kind!r}.")
    handle, name = tempfile.mkstemp(prefix="dispatcher-rejects-", suffix=f".{kind}")
    os.close(handle)
    path = Path(name)
    try:
        write_campaign_rejects(console.store, campaign_id, path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FileResponse(path, media_type=_REPORT_TYPES[kind], filename=f"campaign-{campaign_id}-rejects.{kind}",
                        background=BackgroundTask(_unlink, path))


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number, got {raw!r}.") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low} and {high}, got {value}.")
    return value


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
