"""``dispatcher preflight``: check a recipient file before a cent is spent."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from dispatcher.cli._app import app
from dispatcher.cli._common import connect_redis, err, load_settings, out
from dispatcher.cli._options import (
    Country,
    File,
    GsmOnly,
    MaxCost,
    MessageText,
    MessageTextColumn,
    NoHlr,
    PhoneColumn,
    Sender,
    preflight_options,
)
from dispatcher.instasent.client import InstasentClient
from dispatcher.preflight.hlr import Progress as ProgressCallback
from dispatcher.preflight.rejects import write_rejects
from dispatcher.preflight.result import PreflightResult, check_budget, money
from dispatcher.preflight.stream import preflight_streamed

#: Rejected rows listed in the readable summary (all of them go to --json and --rejects-out).
SHOWN_REJECTS = 15


@app.command()
def preflight(
    file: File,
    text: MessageText = None,
    text_column: MessageTextColumn = None,
    sender: Sender = None,
    country: Country = None,
    phone_column: PhoneColumn = None,
    no_hlr: NoHlr = False,
    gsm_only: GsmOnly = False,
    max_cost: MaxCost = None,
    rejects_out: Path | None = typer.Option(None, "--rejects-out",
                                            help="Write rejected rows to this file: .csv or .parquet."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Count messages, parts and cost of a campaign and list the rows that will not be sent.

    Exits 0 when the campaign can go, 2 on bad input, 3 when the cost exceeds the balance or --max-cost.
    """
    options = preflight_options(text, text_column, sender, country, phone_column, no_hlr, gsm_only, max_cost)
    settings = load_settings()
    redis_client = connect_redis(settings)
    with InstasentClient.from_settings(settings) as client, lookup_progress() as progress:
        result = preflight_streamed(file, options, settings=settings, redis=redis_client, client=client,
                                    progress=progress)
    if rejects_out is not None:
        write_rejects(rejects_out, result.rejects)
    if as_json:
        typer.echo(orjson.dumps(result.to_json()).decode())
    else:
        print_summary(result, rejects_out)
    check_budget(result, options.max_cost)


@contextmanager
def lookup_progress() -> Iterator[ProgressCallback]:
    """A progress bar for the lookups on stderr (shown only on a terminal)."""
    bar = Progress(TextColumn("HLR lookups"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=err, transient=True, disable=not err.is_terminal)
    task = bar.add_task("lookups", total=None, visible=False)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total, visible=total > 0)

    with bar:
        yield update


def print_summary(result: PreflightResult, rejects_out: Path | None = None) -> None:
    """The readable summary: totals, the countries, the reasons and the first rejected rows."""
    out.print(_totals(result))
    if result.by_country:
        out.print(_countries(result))
    if result.rejects:
        out.print(_reasons(result))
        out.print(_first_rejects(result))
        if rejects_out is not None:
            out.print(f"All {len(result.rejects):,} rejected rows were written to {rejects_out}.")
        elif len(result.rejects) > SHOWN_REJECTS:
            out.print("Use --rejects-out FILE.csv to get every rejected row.")


def _totals(result: PreflightResult) -> Table:
    table = Table(title=Text(f"Preflight of {result.file}"), show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    currency = result.currency
    table.add_row("File", Text(f"{result.source}, phone column {result.phone_column!r}"))
    table.add_row("Rows", f"{result.rows:,}")
    table.add_row("Messages to send", f"{result.valid:,}")
    table.add_row("SMS parts", f"{result.parts:,} ({result.unicode:,} messages need Unicode)")
    table.add_row("Rejected rows", f"{result.rejected:,}")
    table.add_row("Duplicates (kept once)", f"{result.duplicates:,}")
    table.add_row("Suppressed", f"{result.suppressed:,}")
    table.add_row("HLR lookups", f"{result.lookups:,} paid, {result.lookups_cached:,} from cache")
    table.add_row("Cost of messages", money(result.message_cost, currency))
    table.add_row("Cost of lookups", money(result.lookup_cost, currency))
    table.add_row("Total cost", Text(money(result.cost, currency), style="bold"))
    table.add_row("Balance", money(result.balance, currency))
    return table


def _countries(result: PreflightResult) -> Table:
    table = Table(title="By country", title_justify="left")
    for name in ("Country", "Messages", "Parts", "Lookups", "Cost"):
        table.add_column(name, justify="left" if name == "Country" else "right")
    for country, summary in sorted(result.by_country.items(), key=lambda item: -item[1].cost):
        table.add_row(country, f"{summary.messages:,}", f"{summary.parts:,}", f"{summary.lookups:,}",
                      money(summary.cost, result.currency))
    return table


def _reasons(result: PreflightResult) -> Table:
    table = Table(title="Rejected rows by reason", title_justify="left")
    table.add_column("Reason")
    table.add_column("Rows", justify="right")
    for reason, count in Counter(r.reason for r in result.rejects).most_common():
        table.add_row(Text(reason), f"{count:,}")
    return table


def _first_rejects(result: PreflightResult) -> Table:
    shown = result.rejects[:SHOWN_REJECTS]
    table = Table(title=f"First {len(shown)} of {len(result.rejects):,} rejected rows", title_justify="left")
    table.add_column("Row", justify="right")
    table.add_column("Value")
    table.add_column("Reason")
    for reject in shown:
        table.add_row(str(reject.row), Text(reject.value), Text(reject.reason))
    return table
