"""Which handler serves an API request, and under which rate-limit endpoint name.

Every path is served under both ``/`` and ``/transactional/v1/``, with or without a trailing
slash. Endpoint names are the method and the path template, as the client books its limits:
``"POST /sms/bulk"``, ``"GET /sms/{id}"``.
"""

from __future__ import annotations

from dispatcher.dev.sandbox import api
from dispatcher.dev.sandbox.api import Handler

#: The Transactional API's path prefix; the Legacy API has none.
PREFIX = "/transactional/v1"

#: Rate-limit bucket of paths the API does not have.
UNKNOWN_ENDPOINT = "OTHER"

_ROUTES: dict[str, dict[str, Handler]] = {
    "/sms/bulk": {"POST": api.post_bulk},
    "/sms": {"POST": api.post_sms, "GET": api.list_sms},
    "/lookup": {"POST": api.post_lookup, "GET": api.list_lookups},
    "/organization/account": {"GET": api.account},
    "/sms/price-profile/me/countries": {"GET": api.sms_prices},
    "/lookup/price-profile/me/countries": {"GET": api.lookup_prices},
}
_ITEM_ROUTES: dict[str, dict[str, Handler]] = {
    "sms": {"GET": api.get_sms},
    "lookup": {"GET": api.get_lookup},
}


def resolve(method: str, path: str) -> tuple[str, Handler, str]:
    """``(endpoint name, handler, id from the path or "")`` for a request."""
    if path.startswith(PREFIX) and (len(path) == len(PREFIX) or path[len(PREFIX)] == "/"):
        path = path[len(PREFIX):]
    path = "/" + path.strip("/")
    template, item_id = path, ""
    handlers = _ROUTES.get(path)
    if handlers is None:
        head, _, tail = path[1:].partition("/")
        handlers = _ITEM_ROUTES.get(head) if tail and "/" not in tail else None
        template, item_id = f"/{head}/{{id}}", tail
    if handlers is None:
        return UNKNOWN_ENDPOINT, api.not_found, ""
    handler = handlers.get(method)
    if handler is None:
        return UNKNOWN_ENDPOINT, api.method_not_allowed, ""
    return f"{method} {template}", handler, item_id
