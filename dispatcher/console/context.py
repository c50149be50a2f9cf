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
from urllib.parse import urlsplit

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

#: Methods that change nothing; every other method is a state change, and a cookie-authenticated
#: request with any other method gets the CSRF and Origin checks (whatever the route does with it).
SAFE_METHODS = frozenset({"GET", "HEAD"})
#: Default ports, for comparing an ``Origin`` with the address a request was made to.
_DEFAULT_PORTS = {"http": 80, "https": 443}


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
        return {"error": self.message, "message": self.message, **self.extra}


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

        ``change`` is the role check: a viewer may not change anything or spend money. Apart from
        it, a session cookie needs its CSRF token and a same-site ``Origin`` (when sent) on every
        request that is not GET or HEAD, even one that changes nothing, such as a preflight or a
        sign-out: a cookie is sent by the browser on its own, so another site could forge it. A
        bearer token needs neither (a browser never adds one on its own).

        Raises:
            ApiError: 401 without a valid token or session, 403 for a viewer's change, a missing
                or wrong CSRF token, or another site's origin.
        """
        unsafe = request.method not in SAFE_METHODS
        change = unsafe if change is None else change
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
            if unsafe or change:
                if not session.csrf_ok(request.headers.get(CSRF_HEADER)):
                    raise ApiError(403, "the CSRF token is missing or wrong; reload the page and try again.")
                check_origin(request)
            info = session.token
        if change and not info.can_change:
            raise ApiError(403, f"token {info.name!r} is a viewer's; changes and paid lookups need an admin token.")
        return info


def _origin_of(scheme: str, host: str, port: int | None) -> tuple[str, str, int | None]:
    scheme = scheme.lower()
    return scheme, host.lower().rstrip("."), port if port is not None else _DEFAULT_PORTS.get(scheme)


def check_origin(request: Request) -> None:
    """Refuse a state change whose ``Origin`` header names another site.

    The origin is compared, default ports filled in, with the scheme and host the request was made
    to: the scope's scheme (``https`` behind a TLS proxy when uvicorn trusts that proxy's
    ``X-Forwarded-Proto``) and the ``Host`` header (which the proxy must pass on). ``Origin: null``
    (a sandboxed frame, a file) is another site.

    Raises:
        ApiError: 403 when the origin differs from this server's.
    """
    origin = request.headers.get("origin")
    if not origin:
        return
    refused = ApiError(403, "requests from another site may not change anything here.")
    try:
        theirs = urlsplit(origin.strip())
        their_origin = _origin_of(theirs.scheme, theirs.hostname or "", theirs.port)
        ours = _origin_of(request.url.scheme, request.url.hostname or "", request.url.port)
    except ValueError:  # a port that is not a number, in the Origin or the Host header
        raise refused from None
    if not theirs.hostname or their_origin != ours:
        raise refused
