"""``dispatcher preflight``: check a recipient file before a cent is spent."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer

from dispatcher.cli._app import app
from dispatcher.cli._common import load_resources, writable_output
from dispatcher.cli._options import (
    AccountName,
    Country,
    File,
    GsmOnly,
    Hlr,
    MaxCost,
    MessageText,
    MessageTextColumn,
    PhoneColumn,
    Sender,
    confirm_lookups,
    preflight_options,
)
from dispatcher.preflight.rejects import write_rejects
from dispatcher.preflight.result import check_budget
from dispatcher.schema.names import DEFAULT_ACCOUNT
from dispatcher.screens import lookup_progress, print_summary
from dispatcher.sending import submission


@app.command()
def preflight(
    file: File,
    text: MessageText = None,
    text_column: MessageTextColumn = None,
    sender: Sender = None,
    country: Country = None,
    phone_column: PhoneColumn = None,
    hlr: Hlr = None,
    gsm_only: GsmOnly = False,
    max_cost: MaxCost = None,
    account: AccountName = DEFAULT_ACCOUNT,
    rejects_out: Path | None = typer.Option(None, "--rejects-out",
                                            help="Write rejected rows to this file: .csv or .parquet."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Count messages, parts and cost of a campaign and list the rows that will not be sent.

    Exits 0 when the campaign can go, 2 on bad input, 3 when the cost exceeds the balance or --max-cost.
    """
    options = preflight_options(text, text_column, sender, country, phone_column, hlr, gsm_only, max_cost, account)
    if rejects_out is not None:
        writable_output(rejects_out)
    resources = load_resources()
    with lookup_progress() as progress:
        result = submission.preflight(file, options, settings=resources.settings, redis=resources.redis,
                                      progress=progress, confirm=confirm_lookups(as_json))
    if rejects_out is not None:
        write_rejects(rejects_out, result.rejects)
    if as_json:
        typer.echo(orjson.dumps(result.to_json()).decode())
    else:
        print_summary(result, rejects_out)
    check_budget(result, options.max_cost)
