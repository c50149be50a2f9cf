"""``dispatcher console`` and ``dispatcher token create|list|revoke``."""

from __future__ import annotations

import importlib
import time

import orjson
import typer
from rich.table import Table

from dispatcher.cli._app import app
from dispatcher.cli._common import load_enqueuer, load_resources
from dispatcher.cli._server_options import (
    BodyTimeout,
    ForwardedAllowIps,
    HeaderTimeout,
    KeepAlive,
    MaxConnections,
    server_limits,
)
from dispatcher.console.auth import TokenStore
from dispatcher.resources import Resources
from dispatcher.screens import err, out
from dispatcher.sending.accounts import DEFAULT_ACCOUNT, AccountBook

token_app = typer.Typer(help="API tokens of the console: create (shown once), list, revoke.", no_args_is_help=True)
app.add_typer(token_app, name="token")


def _tokens(resources: Resources) -> TokenStore:
    return TokenStore(resources.redis, resources.keys)


@app.command()
def console(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (loopback by default)."),
    port: int = typer.Option(8790, help="TCP port."),
    public_metrics: bool = typer.Option(False, "--public-metrics",
                                        help="Serve /metrics without a token (for a Prometheus on a trusted net)."),
    header_timeout: HeaderTimeout = None,
    body_timeout: BodyTimeout = None,
    keep_alive: KeepAlive = None,
    max_connections: MaxConnections = None,
    forwarded_allow_ips: ForwardedAllowIps = None,
) -> None:
    """Serve the campaign API, the live dashboard and Prometheus metrics (tokens: `dispatcher token create`)."""
    from dispatcher.console.context import Console
    from dispatcher.console.server import serve

    resources = load_resources()
    settings = resources.settings
    limits = server_limits(settings, header_timeout, body_timeout, keep_alive, max_connections, forwarded_allow_ips)
    resources.redis.ping()
    # Celery's enqueuer and redbeat's entries are loaded by name: the library never imports Celery.
    entries = importlib.import_module("tasks.schedules").Entries(settings)
    built = Console(settings=settings, store=resources.store, ops=resources.ops,
                    schedules=resources.schedules, tokens=_tokens(resources),
                    enqueuer=load_enqueuer(settings), entries=entries, public_metrics=public_metrics)
    if not built.tokens.list():
        out.print("No API token exists yet: create one with `dispatcher token create NAME --role admin`.")
    serve(built, host, port, limits)


@token_app.command("create")
def create(
    name: str = typer.Argument(..., help="A name for the token (who or what uses it)."),
    role: str = typer.Option("viewer", "--role", help="admin (may change things) or viewer (reads only)."),
    accounts: list[str] = typer.Option(
        [], "--account",
        help="Reach only this account's campaigns, schedules, reports and metrics (repeatable; default: all)."),
) -> None:
    """Create a token and print it once; only its hash is stored."""
    resources = load_resources()
    known = [DEFAULT_ACCOUNT, *AccountBook(resources.redis, resources.keys, resources.settings).names()]
    token = _tokens(resources).create(name, role, accounts=accounts, known=known)
    typer.echo(token)
    scope = f"accounts {', '.join(sorted(set(accounts)))}" if accounts else "every account"
    err.print(f"Token {name!r} ({role}, {scope}) created. Keep it now: it cannot be shown again.", style="dim")


@token_app.command("list")
def list_tokens(as_json: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
    """List the tokens' names, roles, accounts and creation times (never the tokens)."""
    tokens = _tokens(load_resources()).list()
    if as_json:
        typer.echo(orjson.dumps([t.to_json() for t in tokens]).decode())
        return
    table = Table("name", "role", "accounts", "created")
    for t in tokens:
        table.add_row(t.name, t.role, ", ".join(t.accounts) or "all",
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(t.created_at)))
    out.print(table)


@token_app.command("revoke")
def revoke(name: str = typer.Argument(..., help="Token name.")) -> None:
    """Revoke a token: its requests and dashboard sessions are refused from now on."""
    _tokens(load_resources()).revoke(name)
    out.print(f"Token {name!r} revoked.")
