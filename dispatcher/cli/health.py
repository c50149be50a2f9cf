"""``dispatcher health``: can this install send? Redis, its replicas, the workers (see
``dispatcher.sending.readiness``); exit 0 when every check passes, 1 otherwise."""

from __future__ import annotations

import orjson
import typer

from dispatcher.cli._app import app
from dispatcher.cli._common import load_resources
from dispatcher.screens import out
from dispatcher.sending.readiness import check_health


@app.command("health")
def health(
    json_out: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
    workers: bool = typer.Option(True, "--workers/--no-workers", help="Require a live worker heartbeat."),
) -> None:
    """Check that Redis answers and takes writes, that its replicas are connected and that workers run."""
    resources = load_resources()
    result = check_health(resources.redis, resources.keys, resources.settings, workers=workers)
    if json_out:
        typer.echo(orjson.dumps(result.to_json()).decode())
    else:
        for check in result.checks:
            out.print(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    raise typer.Exit(0 if result.ready else 1)
