"""What every console route needs: the stores, the injected enqueuer, and who is asking.

:class:`Console` holds the dependencies (built by ``dispatcher console``, which is where Celery's
enqueuer and redbeat's schedule entries are loaded, so this package never imports Celery).
:meth:`Console.authorize` answers 401 without a valid token or session, 403 when a viewer tries to
change something or a signed-in page forgets its CSRF token. :class:`ApiError` carries a status
and one sentence; the app turns it into ``{"error": sentence}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dispatcher.console.auth import CSRF_HEADER, SESSION_COOKIE, TokenInfo, TokenStore
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.enqueuer import Enqueuer
from dispatcher.sending.schedules.admin import ScheduleEntries
from dispatcher.sending.schedules.store import ScheduleStore
from dispatcher.sending.store import CampaignStore
from dispatcher.settings import Settings

#: Methods that change nothing; every other method is a state change.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class JSON(Response):
    """A JSON response serialised with orjson (numpy numbers and all)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


class ApiError(Exception):
    """An answer other than success: HTTP ``status``, one sentence, and extra JSON fields."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **self.extra}


@dataclass
class Console:
    """The console's dependencies; one per process."""

    settings: Settings
    store: CampaignStore
    ops: BatchOps
    schedules: ScheduleStore
    tokens: TokenStore
    enqueuer: Enqueuer
    entries: ScheduleEntries
    public_metrics: bool = False

    @property
    def upload_limit_bytes(self) -> int:
        """The upload cap in bytes (``DISPATCHER_MAX_UPLOAD_MB``)."""
        return int(self.settings.max_upload_mb * 1_000_000)

    def authorize(self, request: Request, change: bool | None = None) -> TokenInfo:
        """Who is asking, checked for what they ask; ``change`` defaults to "the method is unsafe".

        A bearer token needs no CSRF token (a browser never adds one on its own); a session
        cookie does on every state change, and the request's ``Origin``, when sent, must be ours.

        Raises:
            ApiError: 401 without a valid token or session, 403 for a viewer's change or a
                missing CSRF token.
        """
        change = request.method not in SAFE_METHODS if change is None else change
        header = request.headers.get("authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            info = self.tokens.authenticate(token.strip()) if scheme.lower() == "bearer" else None
            if info is None:
                raise ApiError(401, "the bearer token is not valid; create one with `dispatcher token create NAME`.")
        else:
            session = self.tokens.session(request.cookies.get(SESSION_COOKIE))
            if session is None:
                raise ApiError(401, "sign in first: send 'Authorization: Bearer TOKEN' or use the dashboard.")
            if change:
                if not session.csrf_ok(request.headers.get(CSRF_HEADER)):
                    raise ApiError(403, "the CSRF token is missing or wrong; reload the page and try again.")
                check_origin(request)
            info = session.token
        if change and not info.can_change:
            raise ApiError(403, f"token {info.name!r} is a viewer's; changes need an admin token.")
        return info


def check_origin(request: Request) -> None:
    """Refuse a state change whose ``Origin`` header names another site.

    Raises:
        ApiError: 403 when the origin differs from this server's.
    """
    origin = request.headers.get("origin")
    if origin and origin.rstrip("/") != f"{request.url.scheme}://{request.url.netloc}":
        raise ApiError(403, "requests from another site may not change anything here.")
