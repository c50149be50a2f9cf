"""The receiver's ASGI app: ``POST /dlr/{secret}`` with Instasent's report payload.

The secret is checked before a byte of the body is read: a wrong or missing one gets 401 at once
and the connection is closed, so an unauthenticated client cannot make the receiver read (or
hold) anything. A body over :data:`MAX_BODY_BYTES` gets 413, from its ``Content-Length`` when it
declares one, else as soon as the stream passes the cap, so no more than the cap is ever buffered.
A malformed body gets 400, and so does a delivery report whose status is not one Instasent
documents (counted). None of these changes anything.

With an allow list (``DISPATCHER_WEBHOOK_ALLOW``), a request from any other address gets 403 before
its secret is even looked at (counted, and the connection closed). The address is the one the
server resolved, ``scope["client"]``: uvicorn replaces the peer's address with the one in
X-Forwarded-For only when the peer is a trusted proxy (``--forwarded-allow-ips``), taking the
rightmost address that is not a trusted proxy, so a client cannot choose its own address.

A report is applied only to a message recorded as sent under the same Instasent id; see
``dispatcher.delivery.reports`` for what is refused (``mismatch``, counted) and held.

Each report is applied with one Lua call (``dispatcher.delivery.reports``) on an asyncio Redis
client, pipelined with the other reports of the same event-loop turn, and the rare blocking work
(opt-outs, inbound messages, holds) runs in worker threads, so Redis never blocks the event loop
and a slow Redis cannot stall the other connections. The answer goes back in about a millisecond,
far inside Instasent's 5 s. Instasent retries anything that is not 2xx, and applying is
idempotent, so a retry is harmless.

A report is answered 2xx only once it is stored: when Redis cannot be reached (a failover, a
restart) the answer is 503, so that Instasent retries, and with ``DISPATCHER_REDIS_MIN_REPLICAS``
only once that many replicas have its writes (``dispatcher.delivery.replicated``): a failover
cannot lose a report that was answered 2xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import os
from collections.abc import AsyncIterator, Sequence

import anyio.to_thread
import orjson
import redis
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from dispatcher.delivery.optout import handle_optout, keep_inbound
from dispatcher.delivery.replicated import barrier
from dispatcher.delivery.reports import AsyncDeliveryBook, DeliveryBook, Report, UnknownStatus, parse_reports
from dispatcher.errors import InputError, error_body
from dispatcher.keys import Keys
from dispatcher.schema.names import REFUSED_REPORTS
from dispatcher.sending.readiness import ReadinessProbe, workers_required
from dispatcher.settings import IPNetwork

log = logging.getLogger(__name__)

#: Largest body accepted, in bytes. A report is about 150 bytes; Instasent sends one per call.
MAX_BODY_BYTES = 64 * 1024


#: Path of the report route; the rest of the path is the secret.
DLR_PREFIX = "/dlr/"


class BodyTooLarge(Exception):
    """The request body is over :data:`MAX_BODY_BYTES`."""


async def receive_capped(scope: Scope, receive: Receive, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, received message by message and never more than ``limit`` bytes (plus one message).

    Raises:
        BodyTooLarge: when ``Content-Length`` or the bytes received exceed ``limit``.
        ClientDisconnect: when the client goes away before the body ends.
    """
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise BodyTooLarge
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        body += message.get("body", b"")
        if len(body) > limit:
            raise BodyTooLarge
        if not message.get("more_body", False):
            return body


async def _answer(send: Send, status: int, answer: dict[str, object], close: bool = False) -> None:
    body = orjson.dumps(answer)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # the body may be unread: closing the connection stops the client from streaming the rest to us
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def retry_held_forever(book: DeliveryBook, every_s: float, lock: str | None = None) -> None:
    """Every ``every_s`` seconds, try the held reports again (in a thread): those whose send is now
    recorded are applied or refused, and those held too long are dropped.

    With ``lock`` (a Redis key), a round runs only in the process that sets it first, so several
    receiver processes do one round per period between them. The lock only saves work: a report
    is applied once even when two processes retry at the same time (see ``HeldReports.retry``).
    """
    while True:
        await asyncio.sleep(every_s)
        try:
            if lock is not None and not await anyio.to_thread.run_sync(_take, book, lock, every_s):
                continue
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


def _take(book: DeliveryBook, lock: str, every_s: float) -> bool:
    # Expires a little before the next round, so the round after a crashed holder still runs.
    return bool(book.redis.set(lock, os.getpid(), nx=True, px=max(1, int(every_s * 900))))


def allowed(client: tuple[str, int] | list[object] | None, networks: Sequence[IPNetwork]) -> bool:
    """Whether the ASGI ``client`` (host, port) is inside one of ``networks``; any client is when
    there are none. A client without a readable IP address (a Unix socket) is not."""
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(str(client[0])) if client else None
    except ValueError:
        return False
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack socket shows an IPv4 client as ::ffff:a.b.c.d
    return any(address in network for network in networks)


def create_app(client: redis.Redis, aio: aioredis.Redis, keys: Keys, secret: str,
               held_retry_s: float = 30.0, allow: Sequence[IPNetwork] = (), *,
               probe: ReadinessProbe, replicas: int = 0, replica_wait_s: float = 0.5,
               global_optout: bool = False) -> ASGIApp:
    """The receiver for reports POSTed to ``/dlr/{secret}``, with ``GET /healthz`` (liveness: the
    process answers, Redis is not asked) and ``GET /readyz`` (``probe``'s checks, the same as
    ``dispatcher health``; ``?workers=0`` leaves out the workers' heartbeats), neither behind the
    secret nor the allow list: a load balancer asks them, and their bodies name no host or secret.

    ``aio`` applies delivery reports on the event loop; ``client`` (same server) serves the rare
    blocking work, opt-outs and inbound messages, in worker threads, and retries the held reports
    every ``held_retry_s`` seconds (0: never), so nobody has to; with several receiver processes
    one of them does it each round (a short Redis lock decides). With ``allow``, only clients in
    those networks may post (see the module docstring). With ``replicas``, a report is answered
    2xx only once that many replicas acknowledged its writes, waiting ``replica_wait_s`` seconds
    at most (else 503). A STOP suppresses the number for the account whose campaign it answers,
    or for every account with ``global_optout``.
    """
    book = AsyncDeliveryBook(aio, DeliveryBook(client, keys), replicas, replica_wait_s)
    expected = secret.encode()
    counters = keys.telemetry()

    async def refused(reason: str) -> None:
        # Counting must never turn a refusal into a 500: a Redis hiccup loses one count, nothing else.
        try:
            await aio.hincrby(counters, REFUSED_REPORTS[reason], 1)
        except redis.exceptions.RedisError as exc:
            log.warning("could not count a refused delivery report (%s)", type(exc).__name__)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        retrying = (asyncio.create_task(retry_held_forever(book.book, held_retry_s, keys.dlr_held_retrying()))
                    if held_retry_s > 0 else None)
        try:
            yield
        finally:
            if retrying is not None:
                retrying.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await retrying

    def inbound(report: Report) -> None:
        keep_inbound(client, keys, report)
        handle_optout(client, keys, report, global_optout)
        barrier(client, keys, replicas, replica_wait_s)

    def optout(report: Report) -> None:
        handle_optout(client, keys, report, global_optout)
        barrier(client, keys, replicas, replica_wait_s)

    async def apply(body: bytes) -> tuple[int, dict[str, object]]:
        try:
            reports = parse_reports(body)
        except UnknownStatus as exc:
            await refused("status")
            return 400, error_body(str(exc))
        except InputError as exc:
            return 400, error_body(str(exc))
        outcomes = []
        for report in reports:
            if report.is_inbound:
                await anyio.to_thread.run_sync(inbound, report)
                outcomes.append("inbound")
                continue
            outcome = await book.apply(report)
            outcomes.append(outcome)
            # A stop report whose id is not the one we sent under is refused whole: it may not opt a number out.
            if report.status == "stop" and outcome != "mismatch":
                await anyio.to_thread.run_sync(optout, report)
        return 200, {"ok": True, "outcomes": outcomes}

    async def dlr(scope: Scope, receive: Receive, send: Send) -> None:
        # A raw ASGI handler: this route is the receiver's whole load, and starlette's Request,
        # routing and Response cost about as much as applying the report does.
        if allow and not allowed(scope.get("client"), allow):
            await refused("source")
            await _answer(send, 403, error_body("this address may not post delivery reports"), close=True)
            return
        given = scope["path"][len(DLR_PREFIX):].encode()
        if not expected or not hmac.compare_digest(given, expected):
            await _answer(send, 401, error_body("unknown webhook secret"), close=True)
            return
        try:
            body = await receive_capped(scope, receive)
        except BodyTooLarge:
            await _answer(send, 413, error_body(f"the body is over {MAX_BODY_BYTES // 1024} KB; "
                                                "a delivery report is far smaller"), close=True)
            return
        except ClientDisconnect:
            return
        try:
            status, answer = await apply(body)
        except redis.exceptions.RedisError as exc:
            # Not stored (or not on enough replicas): 503, never 2xx, so that Instasent retries it.
            log.warning("could not store a delivery report (%s): answered 503 so that it is retried",
                        type(exc).__name__)
            status, answer = 503, error_body("delivery reports cannot be stored right now; retry later")
        await _answer(send, status, answer)

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def ready(request: Request) -> JSONResponse:
        try:
            workers = workers_required(request.query_params.get("workers"))
        except InputError as exc:
            return JSONResponse(error_body(str(exc)), status_code=400)
        status, body = (await probe.check(workers)).http_answer()
        return JSONResponse(body, status_code=status)

    rest = Starlette(routes=[Route("/healthz", health, methods=["GET"]), Route("/readyz", ready, methods=["GET"])],
                     lifespan=lifespan)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith(DLR_PREFIX):
            await dlr(scope, receive, send)
        else:
            await rest(scope, receive, send)

    return app
