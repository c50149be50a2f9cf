"""The receiver's ASGI app: ``POST /dlr/{secret}`` with Instasent's report payload.

The secret is checked before a byte of the body is read: a wrong or missing one gets 401 at once
and the connection is closed, so an unauthenticated client cannot make the receiver read (or
hold) anything. A body over :data:`MAX_BODY_BYTES` gets 413, from its ``Content-Length`` when it
declares one, else as soon as the stream passes the cap, so no more than the cap is ever buffered.
A malformed body gets 400. None of these changes anything.

Each report is applied with one Lua call (``dispatcher.delivery.reports``) on an asyncio Redis
client, pipelined with the other reports of the same event-loop turn, and the rare blocking work
(opt-outs, inbound messages, holds) runs in worker threads, so Redis never blocks the event loop
and a slow Redis cannot stall the other connections. The answer goes back in about a millisecond,
far inside Instasent's 5 s. Instasent retries anything that is not 2xx, and applying is
idempotent, so a retry is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator

import anyio.to_thread
import redis
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dispatcher.delivery.optout import handle_optout, keep_inbound
from dispatcher.delivery.reports import AsyncDeliveryBook, DeliveryBook, Report, parse_reports
from dispatcher.errors import InputError
from dispatcher.keys import Keys

log = logging.getLogger(__name__)

#: Largest body accepted, in bytes. A report is about 150 bytes; Instasent sends one per call.
MAX_BODY_BYTES = 64 * 1024


class BodyTooLarge(Exception):
    """The request body is over :data:`MAX_BODY_BYTES`."""


def _refuse(message: str, status_code: int) -> JSONResponse:
    # The body may be unread: closing the connection stops the client from streaming the rest to us.
    return JSONResponse({"message": message}, status_code=status_code, headers={"Connection": "close"})


async def read_capped(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, read chunk by chunk and never more than ``limit`` bytes (plus one chunk).

    Raises:
        BodyTooLarge: when ``Content-Length`` or the bytes received exceed ``limit``.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)


async def retry_held_forever(book: DeliveryBook, every_s: float) -> None:
    """Every ``every_s`` seconds, apply the held reports whose campaign now exists (in a thread)."""
    while True:
        await asyncio.sleep(every_s)
        try:
            applied = await anyio.to_thread.run_sync(book.retry_held)
        except redis.exceptions.RedisError as exc:  # Redis is down for a moment: the next round tries again
            log.warning("could not retry held delivery reports (%s); trying again in %g s", type(exc).__name__,
                        every_s)
            continue
        except Exception:  # a bad held entry must not end the retries for good
            log.exception("retrying held delivery reports failed; trying again in %g s", every_s)
            continue
        if applied:
            log.info("applied %d held delivery reports", applied)


def create_app(client: redis.Redis, aio: aioredis.Redis, keys: Keys, secret: str,
               held_retry_s: float = 30.0) -> Starlette:
    """The receiver for reports POSTed to ``/dlr/{secret}``.

    ``aio`` applies delivery reports on the event loop; ``client`` (same server) serves the rare
    blocking work, opt-outs and inbound messages, in worker threads, and retries the reports held
    for an unknown campaign every ``held_retry_s`` seconds (0: never), so nobody has to.
    """
    book = AsyncDeliveryBook(aio, DeliveryBook(client, keys))
    expected = secret.encode()

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        retrying = asyncio.create_task(retry_held_forever(book.book, held_retry_s)) if held_retry_s > 0 else None
        try:
            yield
        finally:
            if retrying is not None:
                retrying.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await retrying

    def inbound(report: Report) -> None:
        keep_inbound(client, keys, report)
        handle_optout(client, keys, report)

    async def dlr(request: Request) -> JSONResponse:
        given = str(request.path_params.get("secret", "")).encode()
        if not expected or not hmac.compare_digest(given, expected):
            return _refuse("unknown webhook secret", 401)
        try:
            reports = parse_reports(await read_capped(request))
        except BodyTooLarge:
            return _refuse(f"the body is over {MAX_BODY_BYTES // 1024} KB; a delivery report is far smaller", 413)
        except InputError as exc:
            return JSONResponse({"message": str(exc)}, status_code=400)
        outcomes = []
        for report in reports:
            if report.is_inbound:
                await run_in_threadpool(inbound, report)
                outcomes.append("inbound")
                continue
            outcomes.append(await book.apply(report))
            if report.status == "stop":
                await run_in_threadpool(handle_optout, client, keys, report)
        return JSONResponse({"ok": True, "outcomes": outcomes})

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/dlr/{secret}", dlr, methods=["POST"]),
                             Route("/healthz", health, methods=["GET"])], lifespan=lifespan)
