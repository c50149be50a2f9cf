"""``dispatcher sandbox``: run the local Instasent-compatible server."""

from __future__ import annotations

import typer

from dispatcher.cli._app import app
from dispatcher.dev.sandbox.config import Faults, SandboxConfig, parse_projects

#: The token the sandbox accepts unless told otherwise (a local, documented value, not a secret).
DEFAULT_TOKEN = "sandbox-token"


@app.command()
def sandbox(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8787, help="TCP port to listen on."),
    token: str = typer.Option(DEFAULT_TOKEN, envvar="SANDBOX_TOKEN",
                              help="The only token accepted (without --project)."),
    project: list[str] = typer.Option(
        [], "--project", metavar="ORG:TOKEN",
        help="Play organization ORG with this token (repeatable; the tokens of one ORG share its balance "
             "and rate limits). With any, only these tokens are accepted."),
    balance: float = typer.Option(100000.0, help="Starting account balance (of each organization)."),
    currency: str = typer.Option("EUR", help="Account currency."),
    rate_limit: int = typer.Option(6000, help="Requests per minute per endpoint, of each organization (0: no limit)."),
    latency_ms: float = typer.Option(0.0, help="Milliseconds added to every response."),
    error_rate: float = typer.Option(0.0, help="Share of sends answered 500 before anything is accepted."),
    error_after_accept_rate: float = typer.Option(0.0, help="Share of sends accepted, then answered 500."),
    timeout_rate: float = typer.Option(0.0, help="Share of sends accepted, then held past the timeout."),
    timeout_hold_s: float = typer.Option(35.0, help="Seconds a 'timed out' response is held."),
    throttle_rate: float = typer.Option(0.0, help="Share of sends answered 429 at random."),
    list_lag_s: float = typer.Option(0.0, help="Seconds before an accepted message shows in GET /sms by clientId."),
    seed: int | None = typer.Option(None, help="Seed for the fault and delivery-report dice."),
    enforce_unique_client_id: bool = typer.Option(
        True, "--enforce-unique-client-id/--no-enforce-unique-client-id",
        help="Reject a clientId already used by an accepted message.",
    ),
    dlr_url: str | None = typer.Option(None, help="POST delivery reports to this URL."),
    dlr_delay_s: float = typer.Option(0.2, help="Seconds between acceptance and its delivery report."),
    dlr_failed_rate: float = typer.Option(0.0, help="Share of delivery reports that say failed."),
    dlr_expired_rate: float = typer.Option(0.0, help="Share of delivery reports that say expired."),
    dlr_duplicate_rate: float = typer.Option(0.0, help="Share of delivery reports sent twice."),
    dlr_early_rate: float = typer.Option(0.0, help="Share of delivery reports sent before the response."),
    unpriced: list[str] = typer.Option([], help="ISO country code with no SMS price (repeatable)."),
) -> None:
    """Run a local Instasent-compatible API for tests, demos and benchmarks (prints how to point the CLI at it)."""
    from dispatcher.dev.sandbox.server import serve

    try:
        projects = parse_projects(project)
    except ValueError as exc:
        # Its text names organizations only: an option's value holds a token, which is never echoed.
        raise typer.BadParameter(f"{exc}.", param_hint="--project") from None
    config = SandboxConfig(
        token=token,
        projects=projects,
        balance=balance,
        currency=currency,
        rate_limit_per_min=rate_limit,
        seed=seed,
        enforce_unique_client_id=enforce_unique_client_id,
        dlr_url=dlr_url,
        dlr_delay_s=dlr_delay_s,
        dlr_failed_rate=dlr_failed_rate,
        dlr_expired_rate=dlr_expired_rate,
        dlr_duplicate_rate=dlr_duplicate_rate,
        dlr_early_rate=dlr_early_rate,
        unpriced_countries=tuple(c.upper() for c in unpriced),
        faults=Faults(
            error_rate=error_rate,
            error_after_accept_rate=error_after_accept_rate,
            timeout_rate=timeout_rate,
            throttle_rate=throttle_rate,
            timeout_hold_s=timeout_hold_s,
            latency_ms=latency_ms,
            list_lag_s=list_lag_s,
        ),
    )
    print_exports(host, port, token, sorted({org for org, _ in projects}))
    serve(config, host=host, port=port)


def print_exports(host: str, port: int, token: str, organizations: list[str] | None = None) -> None:
    """Tell the user the exact lines that point the CLI and the workers at this sandbox.

    The default token (``sandbox-token``, documented) is printed as it is; a token of your own
    (``--token`` or ``SANDBOX_TOKEN``) is not, since this output often ends up in a log file; nor is
    any ``--project`` token (``organizations`` names their organizations).
    """
    reachable = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if organizations:
        typer.echo(f"Playing organizations {', '.join(organizations)}: each takes the --project tokens you "
                   "gave for it.", err=True)
        shown = "<a --project token>"
    else:
        shown = token if token == DEFAULT_TOKEN else "<the --token you gave>"
    typer.echo("Point the CLI and the workers at this sandbox (in each terminal you use):\n"
               f"  export INSTASENT_BASE_URL=http://{reachable}:{port} INSTASENT_TOKEN={shown}", err=True)
