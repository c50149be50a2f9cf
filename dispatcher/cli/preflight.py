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
from dispatcher.client import InstasentClient
from dispatcher.errors import InputError
from dispatcher.hlr import Progress as ProgressCallback
from dispatcher.preflight import PreflightOptions, PreflightResult, check_budget, money, run_preflight
from dispatcher.rejects import write_rejects

#: Rejected rows listed in the readable summary (all of them go to --json and --rejects-out).
SHOWN_REJECTS = 15


@app.command()
def preflight(
    file: Path = typer.Argument(..., help="Recipient list: CSV (also .csv.gz) or Excel .xlsx."),
    text: str | None = typer.Option(None, "--text", help="Message text; {column} is replaced per row."),
    text_column: str | None = typer.Option(None, "--text-column", help="Column holding each row's text."),
    sender: str | None = typer.Option(None, "--from", help="Sender (1..11 characters) for rows without one."),
    country: str | None = typer.Option(None, "--country", help="ISO country for numbers without +/00 (ES, GB...)."),
    phone_column: str | None = typer.Option(None, "--phone-column", help="Column with the phone numbers."),
    no_hlr: bool = typer.Option(False, "--no-hlr", help="Skip the HLR lookups."),
    gsm_only: bool = typer.Option(False, "--gsm-only", help="Reject texts that need Unicode."),
    max_cost: float | None = typer.Option(None, "--max-cost", help="Refuse if the cost exceeds this amount."),
    rejects_out: Path | None = typer.Option(None, "--rejects-out", help="Write rejected rows to this CSV."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Count messages, parts and cost of a campaign and list the rows that will not be sent.

    Exits 0 when the campaign can go, 2 on bad input, 3 when the cost exceeds the balance or --max-cost.
    """
    options = PreflightOptions(text=text, text_column=text_column, sender=sender, country=country,
                               phone_column=phone_column, hlr=not no_hlr, gsm_only=gsm_only,
                               max_cost=max_cost).validated()
    if rejects_out is not None and not rejects_out.parent.is_dir():
        raise InputError(f"--rejects-out: the folder {rejects_out.parent} does not exist.")
    settings = load_settings()
    redis_client = connect_redis(settings)
    with InstasentClient.from_settings(settings) as client, lookup_progress() as progress:
        result = run_preflight(file, options, settings=settings, redis=redis_client, client=client,
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
