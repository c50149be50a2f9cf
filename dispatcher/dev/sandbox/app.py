"""The sandbox as a Starlette app: the Instasent API plus the ``/_sandbox/`` control endpoints.

Every API request goes through :func:`create_app`'s one endpoint, in this order: added latency
(fault), routing, token check (401), the per-endpoint rate limit of the token's organization (429,
empty body), the handler.
Every API response carries the ``X-RateLimit-*`` headers, and every API request is logged in the
request log with its organization (None for a refused token or a sandbox without projects). The
token is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dispatcher.dev.sandbox.api import SERVER_ERROR, Reply, message_reply
from dispatcher.dev.sandbox.clock import now
from dispatcher.dev.sandbox.config import SandboxConfig
from dispatcher.dev.sandbox.control import control_routes
from dispatcher.dev.sandbox.routes import resolve
from dispatcher.dev.sandbox.state import Organization, SandboxState

log = logging.getLogger(__name__)

UNAUTHORIZED = "Invalid or missing access token"
_API_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def presented_tokens(request: Request) -> list[str]:
    """Tokens the request offers: the ``Bearer`` header and the ``access_token`` parameter."""
    tokens = []
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            tokens.append(value.strip())
    if "access_token" in request.query_params:
        tokens.append(request.query_params["access_token"])
    return tokens


def create_app(config: SandboxConfig) -> Starlette:
    """Build the sandbox app; its state lives in ``app.state.sandbox``."""
    state = SandboxState(config)

    def organization(request: Request) -> Organization | None:
        """The organization of the first accepted token the request presents, or None (401)."""
        for token in presented_tokens(request):
            offered = token.encode()
            for known, org in state.token_orgs.items():
                if hmac.compare_digest(offered, known.encode()):
                    return org
        return None

    async def instasent(request: Request) -> Response:
        latency_ms = state.config.faults.latency_ms
        if latency_ms > 0:
            await asyncio.sleep(latency_ms / 1000)
        arrived = now()
        endpoint, handler, item_id = resolve(request.method, request.scope["path"])
        org = organization(request)
        if org is None:
            state.stats.unauthorized += 1
            verdict = state.anonymous.limiter.peek(endpoint, arrived)
            reply = message_reply(401, UNAUTHORIZED)
        else:
            request.state.org = org  # the handlers charge and answer for this organization
            verdict = org.limiter.hit(endpoint, arrived)
            if not verdict.allowed:
                state.stats.rate_limited += 1
                reply = Reply(429)
            else:
                try:
                    reply = await handler(state, request, item_id)
                except Exception:
                    log.exception("sandbox handler for %s failed", endpoint)
                    reply = message_reply(500, SERVER_ERROR)
        state.stats.requests += 1
        state.request_log.add(arrived, endpoint, reply.status, reply.items, None if org is None else org.name)
        headers = verdict.headers()
        if reply.status == 429 and verdict.allowed:
            # An injected throttle is not tied to the minute window: its window resets in a second,
            # so clients that honour X-RateLimit-Reset (as they must) are not stalled for a minute.
            headers.update({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(arrived) + 1)})
        return Response(reply.body, status_code=reply.status, headers=headers,
                         media_type="application/json" if reply.body else None)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.dlr.start()
        try:
            yield
        finally:
            await state.dlr.stop()

    routes = [*control_routes(state), Route("/{path:path}", instasent, methods=_API_METHODS)]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sandbox = state
    return app
