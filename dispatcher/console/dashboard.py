"""The dashboard's pages and its sign-in: ``/`` (a static page) and ``/api/session``.

The page is plain HTML, CSS and JavaScript under ``static/`` (no build step, no CDN: the machines
are offline). It signs in by posting a token to ``/api/session``, which answers with an
HttpOnly, SameSite=Strict session cookie and a CSRF token; from then on the page calls the same
``/api/...`` routes as any client, with ``X-CSRF-Token`` on every state change.
"""

from __future__ import annotations

from pathlib import Path

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dispatcher.console.auth import SESSION_COOKIE, SESSION_TTL_S
from dispatcher.console.context import JSON, ApiError, Console, check_origin
from dispatcher.console.series import pace_limit_per_s
from dispatcher.console.uploads import TooLarge, read_capped

STATIC = Path(__file__).parent / "static"
#: Largest sign-in body read (bytes): a token is 47 characters.
_MAX_SIGN_IN = 4096
#: Security headers on every page: no framing, no inline scripts from elsewhere, no sniffing.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def routes(console: Console) -> list[Route | Mount]:
    """The page, its static files and the session routes bound to ``console``."""

    async def index(_: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    async def sign_in(request: Request) -> Response:
        check_origin(request)
        # Counted as it arrives: a chunked body has no Content-Length to check beforehand.
        try:
            body = await read_capped(request, _MAX_SIGN_IN, TooLarge(
                f"a sign-in is at most {_MAX_SIGN_IN} bytes: send the token as JSON: {{\"token\": \"...\"}}."))
        except TooLarge as exc:
            raise ApiError(413, str(exc)) from None
        try:
            token = str(orjson.loads(body).get("token", "")) if body else ""
        except (orjson.JSONDecodeError, AttributeError):
            raise ApiError(400, "send the token as JSON: {\"token\": \"...\"}.") from None
        opened = console.tokens.open_session(token.strip())
        if opened is None:
            raise ApiError(401, "that token is not valid; ask an admin for one (`dispatcher token create`).")
        session_id, session = opened
        response = JSON(_who(console, session.token.to_json(), session.csrf))
        response.set_cookie(SESSION_COOKIE, session_id, max_age=SESSION_TTL_S, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/")
        return response

    def who(request: Request) -> Response:
        info = console.authorize(request, change=False)
        session = console.tokens.session(request.cookies.get(SESSION_COOKIE))
        return JSON(_who(console, info.to_json(), session.csrf if session else ""))

    def sign_out(request: Request) -> Response:
        # A forged sign-out would end a user's session: a live one needs the CSRF token and our
        # origin like any other change, though any role may sign out. A dead one has nothing to end.
        if console.tokens.session(request.cookies.get(SESSION_COOKIE)) is not None:
            console.authorize(request, change=False)
        console.tokens.close_session(request.cookies.get(SESSION_COOKIE))
        response = JSON({"signed_out": True})
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                               secure=request.url.scheme == "https")
        return response

    return [
        Route("/", index, methods=["GET"]),
        Route("/api/session", sign_in, methods=["POST"]),
        Route("/api/session", who, methods=["GET"]),
        Route("/api/session", sign_out, methods=["DELETE"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]


def _who(console: Console, token: dict[str, object], csrf: str) -> dict[str, object]:
    return {**token, "csrf": csrf, "pace_limit_per_s": pace_limit_per_s(console.settings, console.store),
            "max_upload_mb": console.settings.max_upload_mb}
