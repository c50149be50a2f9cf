"""``dispatcher webhook``, ``inbound`` and ``reconcile``: delivery reports, replies, unknown outcomes."""

from __future__ import annotations

import time

import orjson
import typer
from rich.table import Table
from rich.text import Text

from dispatcher.cli._app import app
from dispatcher.cli._common import load_enqueuer, load_resources, load_settings
from dispatcher.cli._server_options import (
    BodyTimeout,
    ForwardedAllowIps,
    HeaderTimeout,
    KeepAlive,
    MaxConnections,
    server_limits,
)
from dispatcher.errors import ConfigurationError
from dispatcher.resources import Resources
from dispatcher.screens import out


@app.command()
def webhook(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8788, help="TCP port to listen on."),
    workers: int = typer.Option(1, "--workers", min=1, max=64,
                                help="Receiver processes sharing the port (one core each; about one per core)."),
    header_timeout: HeaderTimeout = None,
    body_timeout: BodyTimeout = None,
    keep_alive: KeepAlive = None,
    max_connections: MaxConnections = None,
    forwarded_allow_ips: ForwardedAllowIps = None,
) -> None:
    """Receive Instasent's delivery reports and replies at /dlr/DISPATCHER_WEBHOOK_SECRET."""
    settings = load_settings()
    if not settings.webhook_secret:
        raise ConfigurationError("DISPATCHER_WEBHOOK_SECRET is not set: choose a long random value and register "
                                 "https://your-host/dlr/<that value> as the delivery-report URL in Instasent.")
    if len(settings.webhook_secret.reveal()) < 16:
        raise ConfigurationError("DISPATCHER_WEBHOOK_SECRET is too short: use at least 16 random characters.")
    limits = server_limits(settings, header_timeout, body_timeout, keep_alive, max_connections, forwarded_allow_ips)
    resources = Resources.from_settings(settings)
    from dispatcher.sending.durability import check_persistence

    check_persistence(resources.redis, settings)  # opt-outs and reports must survive a restart
    from dispatcher.webhook.server import serve

    serve(resources, host, port, workers, limits)


@app.command()
def inbound(campaign_id: str | None = typer.Argument(
                None, help="Campaign id; without it, the recent replies that name no campaign."),
            limit: int = typer.Option(50, "--limit", help="Without an id: how many of the newest replies."),
            as_json: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
    """List the replies received for a campaign's messages, or those that name no campaign (stop words marked)."""
    from dispatcher.delivery.optout import inbound_messages, unmatched_messages

    resources = load_resources()
    if campaign_id is None:
        messages = unmatched_messages(resources.redis, resources.keys, limit)
        title = "Replies that name no campaign (no clientId), newest last"
    else:
        resources.store.get(campaign_id)
        messages = inbound_messages(resources.redis, resources.keys, campaign_id)
        title = f"Replies to campaign {campaign_id}"
    if as_json:
        typer.echo(orjson.dumps(messages).decode())
        return
    if not messages:
        out.print("No replies" + (f" to campaign {campaign_id}." if campaign_id else " that name no campaign."))
        return
    table = Table("received", "from", "message", "opt-out", title=title, title_justify="left")
    for m in messages:
        table.add_row(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m["receivedAt"])), str(m["from"]),
                      Text(str(m["message"])), "yes" if m["stop"] else "")
    out.print(table)


@app.command()
def reconcile(
    campaign_id: str = typer.Argument(..., help="Campaign id."),
    grace: float = typer.Option(60.0, "--grace", help="Leave alone batches updated less than this many seconds ago."),
    wait: bool = typer.Option(False, "--wait", help="Wait until no message is unknown (or 5 minutes)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Resolve unknown outcomes by clientId (reports, then Instasent's records) and send only the rest."""
    from dispatcher.delivery.reconcile import reconcile as run_reconcile

    resources = load_resources()
    store = resources.store
    result = run_reconcile(store, resources.ops, resources.deliveries, load_enqueuer(resources.settings),
                           campaign_id, grace_s=grace)
    deadline = time.monotonic() + 300
    while wait and store.get(campaign_id).counts["unknown"] and time.monotonic() < deadline:
        time.sleep(0.2)
    info = store.get(campaign_id)
    summary = {"id": campaign_id, "held_reports_applied": result.held_applied, "batches": result.batches,
               "unknown_before": result.unknown_before, "unknown": info.counts["unknown"], "counts": info.counts}
    if as_json:
        typer.echo(orjson.dumps(summary).decode())
    else:
        out.print(f"Campaign {campaign_id}: {len(result.batches)} batches handed back to the workers to "
                  f"reconcile; unknown {result.unknown_before} -> {info.counts['unknown']}.")
