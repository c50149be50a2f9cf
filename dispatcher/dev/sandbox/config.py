"""Options of the Instasent sandbox (``dispatcher sandbox``), shared by the CLI and the app."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Faults:
    """Fault injection, changeable at run time through ``POST /_sandbox/faults``.

    Rates are probabilities in [0, 1] applied per request to ``POST /sms`` and ``POST /sms/bulk``.
    """

    #: 500 before anything is accepted.
    error_rate: float = 0.0
    #: The request is accepted and recorded, then the response is a 500.
    error_after_accept_rate: float = 0.0
    #: The request is accepted and recorded, then the response is held ``timeout_hold_s``.
    timeout_rate: float = 0.0
    #: 429 with an empty body, before anything is accepted (on top of the real rate limit); its
    #: ``X-RateLimit-Reset`` is one second ahead rather than the end of the minute window.
    throttle_rate: float = 0.0
    #: Seconds a "timed out" response is held before it is finally sent.
    timeout_hold_s: float = 35.0
    #: Milliseconds added to every response.
    latency_ms: float = 0.0
    #: ``GET /sms?clientId=`` leaves out messages accepted less than this many seconds ago (a listing that
    #: lags behind acceptance, so reconciling can miss a message that was sent).
    list_lag_s: float = 0.0
    #: Most entities a page of ``GET /sms`` holds, whatever ``per_page`` asks (0: the API's 100).
    list_per_page_cap: float = 0.0
    #: Probability that ``GET /sms`` ignores its ``clientId`` filter and lists everything.
    ignore_client_id_filter_rate: float = 0.0


@dataclass(slots=True)
class SandboxConfig:
    """Everything the sandbox app needs; defaults match ``dispatcher sandbox`` with no options."""

    token: str = "sandbox-token"
    #: ``(organization, token)`` pairs (``dispatcher sandbox --project ORG:TOKEN``). Empty: the sandbox
    #: plays one nameless organization whose only token is :attr:`token`, as it always has. Otherwise
    #: only these tokens are accepted (:attr:`token` is not), and the tokens of one organization share
    #: its balance and its rate limits, each organization starting from :attr:`balance` and
    #: :attr:`rate_limit_per_min`, as Instasent scopes its limits by organization.
    projects: tuple[tuple[str, str], ...] = ()
    #: Starting balance in ``currency`` (of each organization, with :attr:`projects`).
    balance: float = 100000.0
    currency: str = "EUR"
    #: Requests per minute per endpoint (per organization, with :attr:`projects`); 0 disables the
    #: limit (headers are still sent).
    rate_limit_per_min: int = 6000
    seed: int | None = None
    enforce_unique_client_id: bool = True
    #: Where delivery reports are POSTed; None disables them.
    dlr_url: str | None = None
    #: Seconds between acceptance and the delivery report.
    dlr_delay_s: float = 0.2
    #: Share of delivery reports with each final status; the rest are ``delivered``.
    dlr_failed_rate: float = 0.0
    dlr_expired_rate: float = 0.0
    #: Share of reports sent twice, and of reports sent before the bulk response is returned.
    dlr_duplicate_rate: float = 0.0
    dlr_early_rate: float = 0.0
    #: ISO country codes with no SMS price (their messages are rejected).
    unpriced_countries: tuple[str, ...] = ()
    faults: Faults = field(default_factory=Faults)


def parse_project(text: str) -> tuple[str, str]:
    """``"ORG:TOKEN"`` as ``(organization, token)``; the token may itself hold colons.

    Raises:
        ValueError: when either side is empty.
    """
    org, sep, token = text.partition(":")
    if not sep or not org.strip() or not token:
        raise ValueError("a project is ORG:TOKEN, both non-empty")
    return org.strip(), token


def parse_projects(texts: list[str] | tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Every ``"ORG:TOKEN"`` of ``texts`` parsed (see :func:`parse_project`); no message names a token.

    Raises:
        ValueError: when one is malformed, or one token is given to two organizations.
    """
    projects = tuple(parse_project(text) for text in texts)
    owners: dict[str, str] = {}
    for org, token in projects:
        if owners.setdefault(token, org) != org:
            raise ValueError(f"a project token is given to two organizations ({owners[token]} and {org})")
    return projects
