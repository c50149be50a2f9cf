"""The console's ASGI app: API, dashboard and metrics in one Starlette application.

Errors become ``{"error": "one sentence", "message": "the same"}`` (the webhook receiver's shape
too, see ``dispatcher.errors.error_body``) with a fitting status: 400 a malformed request, 401 no
valid token, 403 not allowed, 404 no such campaign or schedule, 409 a state change the campaign's
state refuses, 413 an upload over the cap, 422 options or a file the preflight refuses (with the
preflight object when the budget guard refused), 503 Redis or Instasent away.
A background task samples live campaigns once a second for the charts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import tempfile
from collections.abc import AsyncIterator

import redis
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dispatcher.console import api, dashboard, metrics, schedules
from dispatcher.console.context import JSON, ApiError, Console
from dispatcher.console.openapi import spec
from dispatcher.console.series import take_samples
from dispatcher.errors import (
    ConfigurationError,
    DispatcherError,
    InputError,
    InvalidTransition,
    RetryableError,
    UnknownItem,
    error_body,
)
from dispatcher.resources import readiness_probe
from dispatcher.sending.readiness import ReadinessProbe, workers_required

log = logging.getLogger(__name__)

#: Seconds between two samples of the live campaigns.
SAMPLE_EVERY_S = 1.0


def status_of(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and sentence for an error a route let through."""
    if isinstance(exc, ApiError):
        return exc.status, exc.message
    if isinstance(exc, UnknownItem):
        return 404, str(exc)
    if isinstance(exc, InvalidTransition):
        return 409, str(exc)
    if isinstance(exc, InputError):
        return 422, str(exc)
    if isinstance(exc, ConfigurationError | RetryableError):
        return 503, f"the console cannot do that now: {exc}"
    if isinstance(exc, DispatcherError):
        return 422, str(exc)
    if isinstance(exc, redis.exceptions.RedisError):
        return 503, f"Redis cannot be reached ({type(exc).__name__}); try again when it is back."
    return 500, f"unexpected {type(exc).__name__}; the console's log has the details."


def _without_paths(message: str, directories: tuple[str, ...]) -> str:
    """``message`` with every path under ``directories`` cut to its file name (a last guard: the
    routes already name uploads by the user's own file name)."""

    def name_only(match: re.Match[str]) -> str:
        path = match.group(0)
        bare = path.rstrip(".,;:)")  # the sentence's punctuation stays where it was
        return bare.rsplit("/", 1)[-1] + path[len(bare):]

    for directory in directories:
        message = re.sub(re.escape(directory.rstrip("/")) + r"/[^\s'\"]*", name_only, message)
    return message


def create_app(console: Console, sample: bool = True, probe: ReadinessProbe | None = None) -> Starlette:
    """The console app for ``console``; ``sample`` runs the once-a-second sampler.

    ``GET /healthz`` (liveness: the process answers, Redis is not asked) and ``GET /readyz``
    (``probe``'s checks, by default on a short-timeout client of the console's Redis: the same as
    ``dispatcher health``) need no token: a load balancer asks them.

    Raises:
        ConfigurationError: when the settings' ``REDIS_URL`` is not a Redis URL (building the probe).
    """
    readiness = probe or readiness_probe(console.settings)

    async def openapi(request: Request) -> Response:
        return JSON(spec())

    async def health(_: Request) -> Response:
        return JSON({"ok": True})

    async def ready(request: Request) -> Response:
        try:
            workers = workers_required(request.query_params.get("workers"))
        except InputError as exc:
            raise ApiError(400, str(exc)) from None
        status, body = (await readiness.check(workers)).http_answer()
        return JSON(body, status_code=status)

    # Directories whose paths an answer never names: temporary files and the console's data.
    private = tuple(sorted({tempfile.gettempdir(), os.path.realpath(tempfile.gettempdir()),
                            os.path.abspath(console.settings.console_data_dir)}, key=len, reverse=True))

    async def on_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ClientDisconnect):
            # The client left mid-body (or the server's body deadline cut it): nobody reads an
            # answer, and a traceback in the log would only hide real failures.
            return Response(status_code=400)
        status, message = status_of(exc)
        message = _without_paths(message, private)
        if status >= 500:
            log.error("%s %s failed", request.method, request.url.path, exc_info=status == 500)
        extra = exc.extra if isinstance(exc, ApiError) else {}
        return JSON({**error_body(message), **extra}, status_code=status)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = "no such page" if exc.status_code == 404 else str(exc.detail)
        return JSON(error_body(message), status_code=exc.status_code)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(_sampler(console)) if sample else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    routes: list[BaseRoute] = [
        Route("/api/openapi.json", openapi, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
        Route("/readyz", ready, methods=["GET"]),
        *api.routes(console), *schedules.routes(console), *metrics.routes(console), *dashboard.routes(console),
    ]
    # Known errors are answered by the exception middleware; only a bug reaches the 500 handler.
    handlers = {ApiError: on_error, DispatcherError: on_error, redis.exceptions.RedisError: on_error,
                HTTPException: on_http, Exception: on_error}
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)


async def _sampler(console: Console) -> None:
    while True:
        try:
            await run_in_threadpool(take_samples, console.store, console.settings.campaign_ttl_s)
        except (redis.exceptions.RedisError, DispatcherError) as exc:  # Redis away: try again next second
            log.warning("sampling skipped: %s", type(exc).__name__)
        await asyncio.sleep(SAMPLE_EVERY_S)
