"""The one exception tree of `dispatcher`.

::

    DispatcherError                      root: everything we raise on purpose
    ├── RetryableError                   trying again later may succeed
    │   ├── ConnectionFailed             nothing reached Instasent (connect error, pool timeout)
    │   ├── RateLimited                  429: not processed; carries ``reset_at`` (Unix seconds)
    │   ├── OutcomeUnknown               the request MAY have been processed (read timeout,
    │   │                                dropped connection, 5xx): reconcile before resending
    │   └── StoreUnavailable             Redis cannot be reached
    └── PermanentError                   retrying the same thing will fail the same way
        ├── ConfigurationError           a missing token, a bad URL, 401 (``AuthenticationFailed``)
        ├── InsufficientFunds            402
        ├── RequestRejected              any other 4xx (``NotFound`` 404, ``PayloadTooLarge`` 413)
        ├── InputError                   a bad file, column, phone, option: the user's to fix
        │   └── UnknownItem              no campaign or schedule has that id or name
        ├── BudgetExceeded               the preflight's balance or ``--max-cost`` guard
        └── InvalidTransition            a campaign state change that is not allowed

Every error carries ``maybe_processed``: ``True`` only when Instasent may have acted on the
request, which is the one case where a resend could deliver a message twice. Messages are plain
sentences meant for the user and never contain a token. ``exit_code`` is what the CLI exits with.
"""

from __future__ import annotations


class DispatcherError(Exception):
    """Root of every error `dispatcher` raises on purpose."""

    #: Process exit code the CLI uses for this error.
    exit_code: int = 1
    #: True when the remote side may have processed the request despite the error.
    maybe_processed: bool = False

    def __init__(self, message: str, *args: object) -> None:
        # Pass every argument up so the exception survives pickling (Celery, multiprocessing).
        super().__init__(message, *args)
        self.message = message

    def __str__(self) -> str:
        return self.message


class RetryableError(DispatcherError):
    """The operation failed for a reason that may go away; it may be retried."""


class ConnectionFailed(RetryableError):
    """Instasent could not be reached; nothing was sent."""


class RateLimited(RetryableError):
    """Instasent answered 429; the request was not processed.

    ``reset_at`` is the Unix time (seconds) at which the rate-limit window resets, or ``None``
    when the response did not say.
    """

    def __init__(self, message: str, reset_at: float | None = None) -> None:
        super().__init__(message, reset_at)
        self.reset_at = reset_at


class OutcomeUnknown(RetryableError):
    """The request may have been processed: never resend it blindly, reconcile first.

    ``status`` is the HTTP status when there was a response (5xx), else ``None``.
    """

    maybe_processed = True

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message, status)
        self.status = status


class StoreUnavailable(RetryableError):
    """The Redis server cannot be reached."""


class PermanentError(DispatcherError):
    """Retrying the same operation will fail the same way."""


class ConfigurationError(PermanentError):
    """The settings are missing or wrong (token, URLs, numbers)."""

    exit_code = 2


class AuthenticationFailed(ConfigurationError):
    """Instasent answered 401: the token is missing or unknown."""


class InsufficientFunds(PermanentError):
    """Instasent answered 402: the account balance does not cover the request."""


class RequestRejected(PermanentError):
    """Instasent refused the request as malformed (a 4xx other than 401, 402, 429)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message, status)
        self.status = status


class NotFound(RequestRejected):
    """Instasent answered 404."""


class PayloadTooLarge(RequestRejected):
    """Instasent answered 413: the bulk request holds too many items."""


class InputError(PermanentError):
    """The user's input (file, column, phone, option) is unusable."""

    exit_code = 2


class UnknownItem(InputError):
    """No campaign or schedule has the id or name the user gave (HTTP 404 in the console)."""


class BudgetExceeded(PermanentError):
    """The campaign would cost more than the balance or the user's budget."""

    exit_code = 3


class InvalidTransition(PermanentError):
    """A campaign cannot move from its current state to the requested one."""

    exit_code = 2


def error_body(sentence: str) -> dict[str, object]:
    """An error's JSON body, the same in both servers (the console and the webhook receiver):
    ``error`` is the key to read (the console's routes, its dashboard and its OpenAPI spec use it);
    ``message``, the same sentence, stays for the clients that read the receiver's old key."""
    return {"error": sentence, "message": sentence}
