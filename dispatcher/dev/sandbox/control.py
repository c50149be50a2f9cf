"""The sandbox's own endpoints under ``/_sandbox/``: inspection, faults, reset, inbound messages.

They need no token and are never rate limited or logged:

- ``GET /_sandbox/stats``: counters, balance (summed over the organizations) and pending reports;
  with projects, ``organizations`` gives each one's balance.
- ``GET /_sandbox/messages?offset=&limit=``: accepted messages, oldest first, with how many times
  their clientId was submitted and accepted.
- ``GET /_sandbox/requests?since=&offset=&limit=``: the request log, oldest first; each row names
  the organization of its token in ``org`` (null for a refused token or a sandbox without projects).
- ``GET /_sandbox/config``: the config in force (without any token).
- ``GET|POST /_sandbox/faults``: read or change fault options (unknown fields: 400).
- ``POST /_sandbox/reset``: forget everything, then apply optional config overrides.
- ``POST /_sandbox/inbound``: POST an inbound message (``{"from", "to", "message"}``) to ``dlr_url``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dispatcher.dev.sandbox.clock import iso_utc, now
from dispatcher.dev.sandbox.prices import MICROS
from dispatcher.dev.sandbox.state import SandboxState, new_id

#: First words of an inbound message that opt the sender out (status ``stop``).
OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "BAJA"})
#: Status of any other inbound message.
INBOUND_STATUS = "received"


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _error(message: str, status: int = 400) -> Response:
    return _json({"message": message}, status)


def _int_param(request: Request, name: str, default: int | None) -> int | None:
    value = request.query_params.get(name)
    return default if not value else max(0, int(value))


async def _json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object; an empty body is ``{}``.

    Raises:
        ValueError: when the body is not a JSON object.
    """
    body = await request.body()
    if not body.strip():
        return {}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("Problems parsing JSON") from None
    if not isinstance(data, dict):
        raise ValueError("The body must be a JSON object")
    return data


def public_config(state: SandboxState) -> dict[str, Any]:
    """The config in force, as JSON, without any token: with projects, ``organizations`` names each
    organization once in place of ``projects`` (whose tokens are not shown)."""
    config = dataclasses.asdict(state.config)
    config.pop("token", None)
    if config.pop("projects", None):
        config["organizations"] = list(dict.fromkeys(org for org, _ in state.config.projects))
    return config


def control_routes(state: SandboxState) -> list[Route]:
    """The ``/_sandbox/*`` routes bound to ``state``."""

    async def stats(request: Request) -> Response:
        data = state.stats.as_dict()
        data.update(balance=state.balance, currency=state.config.currency, messages=state.sms_count,
                    dlr_pending=state.dlr.pending, requests_logged=len(state.request_log))
        if state.config.projects:
            data["organizations"] = {org.name: {"balance": org.balance} for org in state.orgs.values()}
        return _json(data)

    async def messages(request: Request) -> Response:
        try:
            offset = _int_param(request, "offset", 0) or 0
            limit = _int_param(request, "limit", None)
        except ValueError:
            return _error("offset and limit must be integers")
        rows = state.sms_slice(offset, state.sms_count if limit is None else offset + limit)
        submissions = state.submissions
        return _json({"messages": [
            {"id": sms.id, "clientId": sms.client_id, "from": sms.sender, "to": sms.to, "text": sms.text,
             "encoding": sms.encoding, "parts": sms.parts, "price": sms.price_micros / MICROS,
             "submissions": submissions.get(sms.client_id, 1) if sms.client_id is not None else 1,
             "accepted": state.accepted_count(sms.client_id) if sms.client_id is not None else 1,
             "acceptedAt": sms.accepted_at}
            for sms in rows
        ]})

    async def requests(request: Request) -> Response:
        try:
            since_text = request.query_params.get("since")
            since = float(since_text) if since_text else None
            offset = _int_param(request, "offset", 0) or 0
            limit = _int_param(request, "limit", None)
        except ValueError:
            return _error("since, offset and limit must be numbers")
        return _json({"requests": state.request_log.rows(since, offset, limit, with_org=True)})

    async def config(request: Request) -> Response:
        return _json(public_config(state))

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            try:
                state.set_faults(await _json_object(request))
            except ValueError as exc:
                return _error(str(exc))
        return _json(dataclasses.asdict(state.config.faults))

    async def reset(request: Request) -> Response:
        try:
            state.reset(await _json_object(request))
        except ValueError as exc:
            return _error(str(exc))
        return _json({"config": public_config(state)})

    async def inbound(request: Request) -> Response:
        try:
            body = await _json_object(request)
        except ValueError as exc:
            return _error(str(exc))
        url = state.config.dlr_url
        if not url:
            return _error("no dlr_url is configured", 409)
        fields = {name: body.get(name) for name in ("from", "to", "message")}
        missing = sorted(name for name, value in fields.items() if not isinstance(value, str) or not value)
        if missing:
            return _error(f"inbound needs non-empty strings: {', '.join(missing)}")
        message = str(fields["message"])
        first_word = message.strip().split(maxsplit=1)[0].upper() if message.strip() else ""
        status = body.get("status") or ("stop" if first_word in OPT_OUT_WORDS else INBOUND_STATUS)
        payload = {"id": new_id(), "clientId": body.get("clientId"), "status": status, "code": 0,
                   "eventAt": iso_utc(now()), **fields}
        delivered = (await state.dlr.send_now([state.dlr.new_report(url, payload, inbound=True)]))[0]
        return _json({"delivered": delivered, "payload": payload})

    endpoints = [
        ("stats", stats, ["GET"]),
        ("messages", messages, ["GET"]),
        ("requests", requests, ["GET"]),
        ("config", config, ["GET"]),
        ("faults", faults, ["GET", "POST"]),
        ("reset", reset, ["POST"]),
        ("inbound", inbound, ["POST"]),
    ]
    return [Route(f"/_sandbox/{name}{slash}", endpoint, methods=methods)
            for name, endpoint, methods in endpoints for slash in ("", "/")]
