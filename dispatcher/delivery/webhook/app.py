"""The receiver's ASGI app: ``POST /dlr/{secret}`` with Instasent's report payload.

A wrong or missing secret gets 401 and a malformed body 400; neither changes anything. Each
report is applied with one Lua call (``dispatcher.delivery.reports``), so the answer goes back in about a
millisecond, far inside Instasent's 5 s; Instasent retries anything that is not 2xx, and applying
is idempotent, so a retry is harmless.
"""

from __future__ import annotations

import hmac
import logging

import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dispatcher.delivery.optout import handle_optout, keep_inbound
from dispatcher.delivery.reports import DeliveryBook, parse_reports
from dispatcher.errors import InputError
from dispatcher.keys import Keys

log = logging.getLogger(__name__)


def create_app(client: redis.Redis, keys: Keys, secret: str) -> Starlette:
    """The receiver for reports POSTed to ``/dlr/{secret}``."""
    book = DeliveryBook(client, keys)
    expected = secret.encode()

    def receive(request: Request, body: bytes) -> JSONResponse:
        given = str(request.path_params.get("secret", "")).encode()
        if not expected or not hmac.compare_digest(given, expected):
            return JSONResponse({"message": "unknown webhook secret"}, status_code=401)
        try:
            reports = parse_reports(body)
        except InputError as exc:
            return JSONResponse({"message": str(exc)}, status_code=400)
        outcomes = []
        for report in reports:
            if report.is_inbound:
                keep_inbound(client, keys, report)
                handle_optout(client, keys, report)
                outcomes.append("inbound")
                continue
            outcomes.append(book.apply(report))
            if report.status == "stop":
                handle_optout(client, keys, report)
        return JSONResponse({"ok": True, "outcomes": outcomes})

    async def dlr(request: Request) -> JSONResponse:
        body = await request.body()
        # The Redis work is one Lua call of ~0.1 ms on loopback: running it on the event loop costs
        # less than a thread-pool hop per report (measured: bench/bench_webhook.py).
        return receive(request, body)

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/dlr/{secret}", dlr, methods=["POST"]),
                             Route("/healthz", health, methods=["GET"])])
