"""``GET /api/openapi.json``: an OpenAPI 3.1 description of every console route.

Every status a route can answer is listed with it (``tests/console/test_fuzz.py`` checks this by
fuzzing a running console from this document): 401 on every route that needs a token, 503 on
every route that reads Redis (Redis away), 413 on every route that reads a body.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"description": "{\"error\": \"one sentence\", \"message\": \"the same\"}",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_JSON = {"content": {"application/json": {"schema": {"type": "object"}}}}
_STATUS = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}}

_SUBMIT_FIELDS: dict[str, Any] = {
    "file": {"type": "string", "format": "binary", "description": "CSV (.csv.gz) or .xlsx recipient list."},
    "text": {"type": "string", "description": "Message text; {column} is replaced per row."},
    "text_column": {"type": "string"}, "from": {"type": "string", "description": "Sender, 1..11 characters."},
    "country": {"type": "string", "description": "ISO country for numbers without +/00."},
    "phone_column": {"type": "string"}, "no_hlr": {"type": "boolean"}, "hlr": {"type": "boolean"},
    "gsm_only": {"type": "boolean"}, "max_cost": {"type": "number"}, "name": {"type": "string"},
    "window": {"type": "string", "example": "09:00-21:00"}, "days": {"type": "string", "example": "mon-fri"},
    "expire_after": {"type": "string", "example": "6h"},
    "keep_columns": {"type": "string", "example": "nombre,importe",
                     "description": "The list's columns carried into the report: names, or all."},
    "account": {"type": "string", "example": "default",
                "description": "The account to send for (`dispatcher account list`); default: default."},
    "priority": {"type": "string", "enum": ["low", "normal", "high"],
                 "description": "Its share of its lane beside other campaigns (1:2:4); normal by default."},
}
_SCHEDULE_FIELDS: dict[str, Any] = {
    **_SUBMIT_FIELDS, "name": {"type": "string", "description": "Schedule name."},
    "cron": {"type": "string", "example": "0 9 * * MON"}, "tz": {"type": "string", "example": "Europe/Madrid"},
    "every": {"type": "string", "example": "10m"}, "overlap": {"type": "string", "enum": ["skip", "queue"]},
    "grace": {"type": "number", "description": "Seconds late before a firing counts as missed."},
}


def _form(fields: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"multipart/form-data": {
        "schema": {"type": "object", "properties": fields, "required": ["file"]}}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _ERROR for code in sorted({401, 503, *codes})}


def _op(summary: str, ok: str = "200", ok_body: dict[str, Any] | None = None, errors: tuple[int, ...] = (),
        **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": {ok: {"description": "success", **(ok_body or _JSON)},
                                               **_errors(*errors)}, **extra}


_ID = [{"name": "cid", "in": "path", "required": True, "schema": {"type": "string"}}]
_NAME = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
#: What every cookie-authenticated change can be refused for besides the role (CSRF, Origin).
_CHANGE = (403,)
#: A route that reads a body: malformed (400), over a cap (413).
_BODY = (400, 413)
_PAGING = [{"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 10**9}}]
_SIGN_IN = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "properties": {"token": {"type": "string"}}, "required": ["token"]}}}}
_REJECTS = {"content": {"application/json": {"schema": {
    "type": "object", "required": ["total", "reasons", "offset", "limit", "rejects"], "properties": {
        "total": {"type": "integer"}, "reasons": {"type": "object", "additionalProperties": {"type": "integer"}},
        "offset": {"type": "integer"}, "limit": {"type": "integer"},
        "rejects": {"type": "array", "items": {"type": "object"}}}}}}}


def spec() -> dict[str, Any]:
    """The OpenAPI document."""
    paths: dict[str, Any] = {
        "/api/session": {
            "post": _op("Sign in with a token: sets an HttpOnly session cookie (Secure over HTTPS), returns the "
                        "CSRF token. 403 when the Origin is another site's; 413 over 4096 bytes.",
                        errors=(*_BODY, 403), security=[], requestBody=_SIGN_IN),
            "get": _op("Who is signed in, with the CSRF token."),
            "delete": _op("Sign out; a live session needs X-CSRF-Token and a same-site Origin.", errors=_CHANGE),
        },
        "/api/preflight": {"post": _op(
            "Preflight an uploaded file (the `preflight --json` object): `rejects` lists the first "
            "DISPATCHER_MAX_ANSWER_REJECTS rejected rows, `rejected` counts them all. Paid HLR lookups (hlr=1) "
            "need an admin token (403 for a viewer). 413 when the body, the file once decompressed "
            "(DISPATCHER_MAX_UPLOAD_EXPANDED_MB) or its rows (DISPATCHER_MAX_UPLOAD_ROWS) are over their caps.",
            errors=(*_BODY, *_CHANGE, 422), requestBody=_form(_SUBMIT_FIELDS))},
        "/api/campaigns": {
            "post": _op("Preflight and submit an uploaded file (admin); 413 as for a preflight.", ok="201",
                        ok_body=_STATUS, errors=(*_BODY, *_CHANGE, 422), requestBody=_form(_SUBMIT_FIELDS)),
            "get": _op("Campaigns, newest first, paged with offset and limit.", errors=(400,), parameters=[
                *_PAGING,
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}}]),
        },
        "/api/campaigns/{cid}": {"get": _op("One campaign (the `status --json` object).", ok_body=_STATUS,
                                            errors=(404,), parameters=_ID)},
        "/api/campaigns/{cid}/report": {"get": _op(
            "One row per message: CSV (E.164 numbers as they are, other outside cells spreadsheet-safe), "
            ".xlsx with format=xlsx (numbers as text), or Parquet with format=parquet.", errors=(400, 404),
            ok_body={"content": {"text/csv": {}, "application/vnd.apache.parquet": {},
                                 "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {}}},
            parameters=[*_ID, {"name": "format", "in": "query", "schema": {"enum": ["csv", "xlsx", "parquet"]}}])},
        "/api/campaigns/{cid}/rejects": {"get": _op(
            "The rows the preflight rejected, a page at a time (offset, limit: 1000 by default, at most 10000), "
            "with the count of every reason over all of them; with format=csv|xlsx|parquet, all of them as a "
            "file (row, value, reason).", ok_body={"content": {
                **_REJECTS["content"], "text/csv": {}, "application/vnd.apache.parquet": {},
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {}}},
            errors=(400, 404), parameters=[
                *_ID, *_PAGING,
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10_000}},
                {"name": "format", "in": "query", "schema": {"enum": ["csv", "xlsx", "parquet"]}}])},
        "/api/campaigns/{cid}/summary": {"get": _op(
            "The campaign report: text, sender, delivery rates, undelivered by report code, actual and "
            "estimated cost (decimal strings), countries, timeline with pauses.", errors=(404,), parameters=_ID)},
        "/api/campaigns/{cid}/series": {"get": _op("Samples of the campaign's counters over time (charts).",
                                                   errors=(404,), parameters=_ID)},
        "/api/schedules": {
            "get": _op("Schedules with their next and last firings."),
            "post": _op("Add or replace a schedule with its file (admin): all or nothing, a refused schedule "
                        "changes no file.", ok="201", errors=(*_BODY, *_CHANGE, 422),
                        requestBody=_form(_SCHEDULE_FIELDS)),
        },
        "/api/schedules/{name}": {
            "get": _op("One schedule: window, text, next runs, last firings, current campaign.", errors=(404,),
                       parameters=_NAME),
            "patch": _op("Edit a schedule (admin): the fields sent change, a file part replaces the file.",
                         errors=(*_BODY, *_CHANGE, 404, 422), parameters=_NAME, requestBody={
                             "content": {"multipart/form-data": {"schema": {"type": "object",
                                                                            "properties": _SCHEDULE_FIELDS}},
                                         "application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}),
            "delete": _op("Remove a schedule (admin). With an unfinished campaign it created, say current=keep or "
                          "current=cancel (409 without).", errors=(*_CHANGE, 404, 409, 422), parameters=[
                              *_NAME, {"name": "current", "in": "query", "schema": {"enum": ["keep", "cancel"]}}]),
        },
        "/api/schedules/{name}/run": {"post": _op("Fire a schedule now (admin); the beat's times stay as they are.",
                                                  errors=(*_CHANGE, 404, 422), parameters=_NAME)},
        "/metrics": {"get": _op("Prometheus metrics (public with --public-metrics).",
                                ok_body={"content": {"text/plain": {}}})},
        "/healthz": {"get": {"summary": "Liveness: {\"ok\": true}, no token needed.", "security": [],
                             "responses": {"200": {"description": "alive", **_JSON}}}},
        "/readyz": {"get": {
            "summary": "Readiness, no token needed: Redis answers and takes writes, the replicas POSTs wait for "
                       "(DISPATCHER_REDIS_MIN_REPLICAS) are connected and a worker's heartbeat is alive "
                       "(workers=0 leaves that out); answered within about 3 s even when Redis is down; an answer is "
                       "reused for 1 s.",
            "security": [],
            "parameters": [{"name": "workers", "in": "query", "schema": {"enum": ["0", "1"]}}],
            "responses": {"200": {"description": "ready: {ready, live, checks: {name: {ok, detail}}}", **_JSON},
                          "400": {"description": "a workers value other than 0 or 1", **_JSON},
                          "503": {"description": "not ready: the same body, and error naming the failed checks",
                                  **_JSON}}}},
    }
    for action in ("pause", "resume"):
        paths[f"/api/schedules/{{name}}/{action}"] = {"post": _op(
            f"{action.capitalize()} a schedule (admin).", errors=(*_CHANGE, 404), parameters=_NAME)}
    for action in ("pause", "resume", "cancel"):
        paths[f"/api/campaigns/{{cid}}/{action}"] = {"post": _op(
            f"{action.capitalize()} a campaign (admin); 409 when its state does not allow it.", ok_body=_STATUS,
            errors=(*_CHANGE, 404, 409), parameters=_ID)}
    return {
        "openapi": "3.1.0",
        "info": {"title": "dispatcher console", "version": "1",
                 "description": "Submit, follow and stop SMS campaigns. Errors are "
                                "{\"error\": \"one sentence\", \"message\": the same}."},
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "`dispatcher token create NAME --role admin|viewer [--account A]...`; "
                                          "a token scoped to accounts gets 404 for other accounts' campaigns and "
                                          "schedules (as for missing ones) and 403 for a form naming another "
                                          "account."},
                "session": {"type": "apiKey", "in": "cookie", "name": "dsp_session",
                            "description": "Dashboard session; state changes also need X-CSRF-Token."},
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {
                    "error": {"type": "string"}, "message": {"type": "string"}, "preflight": {"type": "object"}}},
                "Status": {"type": "object", "required": ["id", "state", "counts"], "properties": {
                    "id": {"type": "string"}, "name": {"type": "string"}, "state": {"type": "string"},
                    "total": {"type": "integer"}, "counts": {"type": "object"},
                    "cost": {"type": "string", "description": "Estimated cost, a decimal string."},
                    "actual_cost": {"type": ["string", "null"]}, "waiting_for": {"type": "object"},
                    "estimated_finish": {"type": ["object", "null"]},
                    "priority": {"type": "string", "enum": ["low", "normal", "high"]},
                    "share": {"type": ["object", "null"], "description": "While it sends: its part of its "
                              "lane's bulk requests in the last minute (fraction), its weight and the lane's."}}},
            },
        },
    }
