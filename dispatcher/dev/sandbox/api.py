"""Handlers of the Instasent API endpoints, after authentication and the rate limit.

Each handler returns a :class:`Reply`; :mod:`dispatcher.dev.sandbox.app` adds the rate-limit headers
and logs the request. Fault injection applies to ``POST /sms`` and ``POST /sms/bulk`` only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request

from dispatcher.dev.sandbox.clock import now
from dispatcher.dev.sandbox.state import Organization, SandboxState, SmsRow, sms_entity
from dispatcher.dev.sandbox.validation import check_to

#: Most items in one bulk, and default/most entities per page of a list.
MAX_BULK_ITEMS = 100
DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 100
#: Largest request body read, in bytes.
MAX_BODY_BYTES = 4 * 1024 * 1024


@dataclass(slots=True)
class Reply:
    """A response before headers: status, JSON body (empty for none), items in the request."""

    status: int
    body: bytes = b""
    items: int = 0


Handler = Callable[[SandboxState, Request, str], Awaitable[Reply]]


def json_reply(status: int, data: Any, items: int = 0) -> Reply:
    """A reply whose body is ``data`` as JSON."""
    return Reply(status, orjson.dumps(data), items)


def message_reply(status: int, message: str, items: int = 0) -> Reply:
    """An error reply ``{"message": message}``."""
    return Reply(status, orjson.dumps({"message": message}), items)


NOT_FOUND = "Not found"
BAD_JSON = "Problems parsing JSON"
NO_FUNDS = "Insufficient balance"
SERVER_ERROR = "Internal server error"


def payer(request: Request) -> Organization:
    """The organization of the request's token (the app set it once the token was accepted)."""
    org: Organization = request.state.org
    return org


# -- sending ------------------------------------------------------------------------------------
def _faults_before(state: SandboxState) -> Reply | None:
    """An injected 429 or 500 before anything is read, or None."""
    faults = state.config.faults
    stats = state.stats
    if state.roll(faults.throttle_rate):
        stats.errors_injected += 1
        stats.throttled_injected += 1
        return Reply(429)
    if state.roll(faults.error_rate):
        stats.errors_injected += 1
        stats.errors_before_accept += 1
        return message_reply(500, SERVER_ERROR)
    return None


async def _finish_send(state: SandboxState, accepted: list[SmsRow], reply: Reply) -> Reply:
    """After acceptance: early delivery reports, then the after-accept faults."""
    early = state.plan_reports(accepted)
    if early:
        await state.dlr.send_now(early)
    faults = state.config.faults
    if state.roll(faults.error_after_accept_rate):
        state.stats.errors_injected += 1
        state.stats.errors_after_accept += 1
        return message_reply(500, SERVER_ERROR, reply.items)
    if state.roll(faults.timeout_rate):
        state.stats.errors_injected += 1
        state.stats.timeouts_injected += 1
        await asyncio.sleep(faults.timeout_hold_s)
    return reply


async def _read_json(request: Request) -> tuple[Any, Reply | None]:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return None, message_reply(413, f"Request body too large (at most {MAX_BODY_BYTES} bytes)")
    try:
        return orjson.loads(body), None
    except orjson.JSONDecodeError:
        return None, message_reply(400, BAD_JSON)


async def post_bulk(state: SandboxState, request: Request, _: str) -> Reply:
    """``POST /sms/bulk``: validate each item, accept the valid ones if the balance covers them."""
    injected = _faults_before(state)
    if injected is not None:
        return injected
    items, problem = await _read_json(request)
    if problem is not None:
        return problem
    if not isinstance(items, list):
        return message_reply(400, "The body must be a JSON array of SMS items")
    count = len(items)
    if count == 0:
        return message_reply(400, "The bulk has no items")
    if count > MAX_BULK_ITEMS:
        return message_reply(413, f"Too many items: {count} (at most {MAX_BULK_ITEMS} per bulk)", count)
    staged = state.stage(items)
    org = payer(request)
    if staged.cost_micros > org.balance_micros:
        state.stats.insufficient_balance += 1
        return message_reply(402, NO_FUNDS, count)
    accepted = state.accept(staged, org)
    body = orjson.dumps({"entities": [sms_entity(row) for row in accepted], "errors": staged.errors})
    return await _finish_send(state, accepted, Reply(201, body, count))


async def post_sms(state: SandboxState, request: Request, _: str) -> Reply:
    """``POST /sms``: one item, 400 with per-field errors when invalid."""
    injected = _faults_before(state)
    if injected is not None:
        return injected
    item, problem = await _read_json(request)
    if problem is not None:
        return problem
    if not isinstance(item, dict):
        return message_reply(400, "The body must be a JSON object")
    staged = state.stage([item])
    if staged.errors:
        return json_reply(400, {"message": "Validation failed", "errors": staged.errors[0]["errors"]}, 1)
    org = payer(request)
    if staged.cost_micros > org.balance_micros:
        state.stats.insufficient_balance += 1
        return message_reply(402, NO_FUNDS, 1)
    accepted = state.accept(staged, org)
    return await _finish_send(state, accepted, json_reply(201, {"entity": sms_entity(accepted[0])}, 1))


# -- reading --------------------------------------------------------------------------------------
def _paging(request: Request) -> tuple[int, int] | None:
    """``(page, per_page)`` from the query (1-based page; per_page capped); None when unreadable."""
    params = request.query_params
    try:
        page = int(params.get("page", 1))
        per_page = int(params.get("per_page", DEFAULT_PER_PAGE))
    except ValueError:
        return None
    if page < 1 or per_page < 1:
        return None
    return page, min(per_page, MAX_PER_PAGE)


def _newest_first(rows: list[Any], page: int, per_page: int) -> list[Any]:
    """Page ``page`` of ``rows`` (oldest first in memory), newest first."""
    end = len(rows) - (page - 1) * per_page
    if end <= 0:
        return []
    return rows[max(0, end - per_page):end][::-1]


BAD_PAGING = "page and per_page must be positive integers"


async def list_sms(state: SandboxState, request: Request, _: str) -> Reply:
    """``GET /sms``: newest first, paged; ``clientId`` (repeatable) filters."""
    paging = _paging(request)
    if paging is None:
        return message_reply(400, BAD_PAGING)
    page, per_page = paging
    faults = state.config.faults
    if faults.list_per_page_cap >= 1:
        per_page = min(per_page, int(faults.list_per_page_cap))
    client_ids = request.query_params.getlist("clientId")
    if client_ids and not state.roll(faults.ignore_client_id_filter_rate):
        found = state.find_sms(client_ids)
        lag = state.config.faults.list_lag_s
        if lag > 0:
            newest = now() - lag
            found = [sms for sms in found if sms.accepted_at <= newest]
        window = found[(page - 1) * per_page:page * per_page]
    else:
        window = state.sms_page(page, per_page)
    return json_reply(200, {"entities": [sms.entity() for sms in window]})


async def get_sms(state: SandboxState, request: Request, sms_id: str) -> Reply:
    """``GET /sms/{id}``."""
    sms = state.get_sms(sms_id)
    if sms is None:
        return message_reply(404, NOT_FOUND)
    return json_reply(200, {"entity": sms.entity()})


async def post_lookup(state: SandboxState, request: Request, _: str) -> Reply:
    """``POST /lookup``: a deterministic HLR answer (see :mod:`dispatcher.dev.sandbox.hlr`), charged."""
    body, problem = await _read_json(request)
    if problem is not None:
        return problem
    if not isinstance(body, dict):
        return message_reply(400, "The body must be a JSON object")
    to = body.get("to")
    region, error = check_to(to)
    if error is not None or region is None or not isinstance(to, str):
        return json_reply(400, {"message": "Validation failed", "errors": {"to": [error]}}, 1)
    org = payer(request)
    if state.lookup_price_micros > org.balance_micros:
        state.stats.insufficient_balance += 1
        return message_reply(402, NO_FUNDS, 1)
    return json_reply(201, {"entity": state.lookup(to, region, org)}, 1)


async def list_lookups(state: SandboxState, request: Request, _: str) -> Reply:
    """``GET /lookup``: newest first, paged."""
    paging = _paging(request)
    if paging is None:
        return message_reply(400, BAD_PAGING)
    return json_reply(200, {"entities": _newest_first(state.lookups, *paging)})


async def get_lookup(state: SandboxState, request: Request, lookup_id: str) -> Reply:
    """``GET /lookup/{id}``."""
    entity = state.lookups_by_id.get(lookup_id)
    if entity is None:
        return message_reply(404, NOT_FOUND)
    return json_reply(200, {"entity": entity})


async def account(state: SandboxState, request: Request, _: str) -> Reply:
    """``GET /organization/account``: the balance of the token's organization; a sandbox with projects
    also names it (``entity.organization``: ``{"id", "name"}``), one without answers as it always has."""
    org = payer(request)
    entity: dict[str, Any] = {"available": org.balance, "currency": state.config.currency}
    if org.name is not None:
        entity["organization"] = {"id": org.name, "name": org.name}
    return json_reply(200, {"entity": entity})


async def sms_prices(state: SandboxState, request: Request, _: str) -> Reply:
    """``GET /sms/price-profile/me/countries``: every priced region."""
    return Reply(200, state.sms_profile)


async def lookup_prices(state: SandboxState, request: Request, _: str) -> Reply:
    """``GET /lookup/price-profile/me/countries``: every region."""
    return Reply(200, state.lookup_profile)


async def not_found(state: SandboxState, request: Request, _: str) -> Reply:
    """Any other path."""
    return message_reply(404, NOT_FOUND)


async def method_not_allowed(state: SandboxState, request: Request, _: str) -> Reply:
    """A known path with another method."""
    return message_reply(405, "Method not allowed")
