"""The one place where httpx's errors and Instasent's statuses become the project's exceptions.

:func:`translate_transport_error` and :func:`raise_for_status` keep apart "nothing was sent"
(connect and write failures, 4xx) and "it may have been processed" (read timeouts, dropped
connections, answers refused as malformed or too large, 5xx), which decides whether a batch is
resent or reconciled first.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Mapping

import httpx
import orjson

from dispatcher.errors import (
    AuthenticationFailed,
    ConfigurationError,
    ConnectionFailed,
    InsufficientFunds,
    NotFound,
    OutcomeUnknown,
    PayloadTooLarge,
    RateLimited,
    RequestRejected,
)
from dispatcher.instasent.models import RateLimitInfo


def parse_rate_limit(headers: Mapping[str, str]) -> RateLimitInfo | None:
    """Read ``X-RateLimit-Limit/Remaining/Reset``; None when absent or unreadable."""
    reset = _parse_reset(headers)
    try:
        limit, remaining = int(headers["x-ratelimit-limit"]), int(headers["x-ratelimit-remaining"])
    except (KeyError, ValueError):
        return None
    return None if reset is None else RateLimitInfo(limit=limit, remaining=remaining, reset=reset)


def _parse_reset(headers: Mapping[str, str]) -> float | None:
    """``X-RateLimit-Reset`` as Unix seconds; None when absent or not a plausible time."""
    try:
        reset = float(headers["x-ratelimit-reset"])
    except (KeyError, ValueError):
        return None
    return reset if math.isfinite(reset) and 0 <= reset < 1e11 else None


@contextlib.contextmanager
def translate_transport_error(endpoint: str) -> Iterator[None]:
    """Map httpx's transport errors to ours, by whether the request can have reached Instasent."""
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError) as exc:
        raise ConnectionFailed(f"Instasent could not be reached for {endpoint} ({type(exc).__name__}); "
                               "nothing was sent.") from exc
    except (httpx.WriteError, httpx.WriteTimeout) as exc:
        # The request body never fully left this machine, so Instasent cannot have acted on it.
        raise ConnectionFailed(f"sending {endpoint} to Instasent failed part-way ({type(exc).__name__}); "
                               "nothing was processed.") from exc
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise ConfigurationError(f"INSTASENT_BASE_URL cannot be used for {endpoint}: {exc}.") from exc
    except httpx.LocalProtocolError as exc:
        # Its message may quote a request header, i.e. the token: name the error only.
        raise ConfigurationError(f"the request for {endpoint} could not be formed ({type(exc).__name__}); "
                                 "check INSTASENT_BASE_URL and INSTASENT_TOKEN.") from None
    except httpx.TransportError as exc:
        # Read timeouts, dropped connections, protocol errors (an answer over the transport's cap
        # among them) after the body was written.
        raise OutcomeUnknown(f"Instasent did not answer {endpoint} ({type(exc).__name__}); "
                             "it may have been processed.") from exc
    except httpx.HTTPError as exc:
        raise OutcomeUnknown(f"the answer to {endpoint} could not be read ({type(exc).__name__}).") from exc


def raise_for_status(endpoint: str, response: httpx.Response) -> None:
    """Raise the project's error for a non-2xx response."""
    status = response.status_code
    if 200 <= status < 300:
        return
    detail = _error_message(response)
    suffix = f": {detail}" if detail else ""
    if status == 429:
        reset_at = _parse_reset(response.headers)
        wait = f" until {time.strftime('%H:%M:%S', time.localtime(reset_at))}" if reset_at else ""
        raise RateLimited(f"Instasent's rate limit for {endpoint} is reached; wait{wait}.", reset_at)
    if status in (401, 403):
        raise AuthenticationFailed(f"Instasent refused the token ({status}){suffix}; check INSTASENT_TOKEN.")
    if status == 402:
        raise InsufficientFunds(f"Instasent says the balance is too low for {endpoint} (402){suffix}; "
                                "top up the account, then resume.")
    if status == 404:
        raise NotFound(f"Instasent does not know {endpoint} (404){suffix}.", status)
    if status == 413:
        raise PayloadTooLarge(f"Instasent says {endpoint} is too large (413){suffix}.", status)
    if status == 408:
        raise ConnectionFailed(f"Instasent timed out waiting for {endpoint} (408); nothing was processed.")
    if status >= 500:
        raise OutcomeUnknown(f"Instasent failed on {endpoint} ({status}){suffix}; it may have been processed.",
                             status)
    if 300 <= status < 400:
        raise ConfigurationError(f"Instasent redirected {endpoint} ({status}); check INSTASENT_BASE_URL.")
    raise RequestRejected(f"Instasent rejected {endpoint} ({status}){suffix}.", status)


def _error_message(response: httpx.Response) -> str:
    """The ``message`` of a JSON error body, shortened; empty when there is none."""
    try:
        body = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return str(message)[:200] if message else ""
