"""``dispatcher suppress``: numbers that must never receive a message."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import typer

from dispatcher.cli._app import app
from dispatcher.cli._common import load_resources
from dispatcher.errors import InputError
from dispatcher.preflight import fileformat, loader
from dispatcher.preflight.phone_columns import normalise_many
from dispatcher.preflight.phones import normalise, parse_region
from dispatcher.preflight.suppression import SuppressionList, to_e164
from dispatcher.screens import out

suppress_app = typer.Typer(help="The suppression list: numbers that must never receive a message.",
                           no_args_is_help=True)
app.add_typer(suppress_app, name="suppress")

_COUNTRY_HELP = "ISO country for numbers written without +/00 (ES, GB...)."


def _suppression() -> SuppressionList:
    return load_resources().suppression


@suppress_app.command("add")
def add(
    numbers: list[str] = typer.Argument(..., help="Phone numbers, in any format."),
    country: str | None = typer.Option(None, "--country", help=_COUNTRY_HELP),
) -> None:
    """Add numbers to the suppression list (all must be valid, or nothing is added)."""
    e164 = to_e164(numbers, parse_region(country))
    suppression = _suppression()
    added = suppression.add(e164)
    out.print(f"Added {added:,} number(s) ({len(set(e164)) - added:,} already there); "
              f"{suppression.count():,} on the list.")


@suppress_app.command("remove")
def remove(
    numbers: list[str] = typer.Argument(..., help="Phone numbers, in any format."),
    country: str | None = typer.Option(None, "--country", help=_COUNTRY_HELP),
) -> None:
    """Remove numbers from the suppression list."""
    region = parse_region(country)
    e164 = [phone.e164 if phone.ok else value.strip()
            for value, phone in ((v, normalise(v, region)) for v in numbers)]
    suppression = _suppression()
    removed = suppression.remove(e164)
    out.print(f"Removed {removed:,} number(s); {suppression.count():,} on the list.")


@suppress_app.command("list")
def list_numbers() -> None:
    """Print every suppressed number, one per line, sorted."""
    for number in sorted(_suppression().members()):
        typer.echo(number)


@suppress_app.command("import")
def import_file(
    file: Path = typer.Argument(..., help="CSV (also .csv.gz) or .xlsx with a phone column."),
    phone_column: str | None = typer.Option(None, "--phone-column", help="Column with the phone numbers."),
    country: str | None = typer.Option(None, "--country", help=_COUNTRY_HELP),
) -> None:
    """Add every valid number of a file to the suppression list; invalid rows are counted and skipped."""
    region = parse_region(country)
    fmt = fileformat.sniff(file)
    column = fileformat.require_column(fmt, phone_column, fileformat.PHONE_NAMES, "phone", "--phone-column")
    suppression = _suppression()
    added = valid = 0
    skipped: Counter[str] = Counter()

    def load(chunk: loader.Chunk) -> tuple[list[str], Counter[str]]:
        phones = normalise_many(chunk.table.column(column), region)
        reasons = Counter(r for r in phones.reason.to_pylist() if r)
        reasons.update(p.reason for p in chunk.problems)
        good = pc.not_equal(phones.e164, "")
        return phones.e164.filter(good).to_pylist(), reasons

    for numbers, reasons in loader.scan(fmt, load):
        valid += len(numbers)
        added += suppression.add(numbers)
        skipped.update(reasons)
    if valid == 0 and not skipped:
        raise InputError(f"{fmt.path.name} has no data rows, only a header.")
    out.print(f"Imported {valid:,} number(s) from {fmt.path.name}: {added:,} new; "
              f"{suppression.count():,} on the list.")
    if skipped:
        detail = "; ".join(f"{reason}: {count:,}" for reason, count in skipped.most_common(5))
        out.print(f"Skipped {sum(skipped.values()):,} row(s) ({detail}).")
