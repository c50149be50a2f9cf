"""``dispatcher suppress``: numbers that must never receive a message."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from dispatcher.cli._app import app
from dispatcher.cli._common import load_resources, writable_output
from dispatcher.errors import UnknownItem
from dispatcher.preflight.phones import normalise, parse_region
from dispatcher.preflight.rejects import write_rejects
from dispatcher.preflight.suppression import SuppressionList, import_numbers, to_e164
from dispatcher.schema.names import DEFAULT_ACCOUNT
from dispatcher.screens import out
from dispatcher.sending.accounts import AccountBook

suppress_app = typer.Typer(help="The suppression list: numbers that must never receive a message.",
                           no_args_is_help=True)
app.add_typer(suppress_app, name="suppress")

_COUNTRY_HELP = "ISO country for numbers written without +/00 (ES, GB...)."
_ACCOUNT_HELP = ("This account's own list (its replies' STOPs), which only its campaigns respect. Without it: "
                 "the global list, which every campaign respects (the default account's own list).")
#: Skipped rows listed on screen (all of them go to --rejects-out).
SHOWN_SKIPPED = 15


def _suppression(account: str | None) -> SuppressionList:
    """The global list, or with ``account`` that account's own.

    Raises:
        UnknownItem: when no account has that name (one sentence naming ``dispatcher account list``).
    """
    resources = load_resources()
    if account is None or account == DEFAULT_ACCOUNT:
        return resources.suppression
    if account not in AccountBook(resources.redis, resources.keys, resources.settings).names():
        raise UnknownItem(f"no account is named {account[:70]!r}: see dispatcher account list.")
    return SuppressionList(resources.redis, resources.keys, account=account)


def _account_option() -> str | None:
    return typer.Option(None, "--account", help=_ACCOUNT_HELP)


@suppress_app.command("add")
def add(
    numbers: list[str] = typer.Argument(..., help="Phone numbers, in any format."),
    country: str | None = typer.Option(None, "--country", help=_COUNTRY_HELP),
    account: str | None = _account_option(),
) -> None:
    """Add numbers to the suppression list (all must be valid, or nothing is added)."""
    e164 = to_e164(numbers, parse_region(country))
    suppression = _suppression(account)
    added = suppression.add(e164)
    out.print(f"Added {added:,} number(s) ({len(set(e164)) - added:,} already there); "
              f"{suppression.count():,} on the list.")


@suppress_app.command("remove")
def remove(
    numbers: list[str] = typer.Argument(..., help="Phone numbers, in any format."),
    country: str | None = typer.Option(None, "--country", help=_COUNTRY_HELP),
    account: str | None = _account_option(),
) -> None:
    """Remove numbers from the suppression list."""
    region = parse_region(country)
    e164 = [phone.e164 if phone.ok else value.strip()
            for value, phone in ((v, normalise(v, region)) for v in numbers)]
    suppression = _suppression(account)
    removed = suppression.remove(e164)
    out.print(f"Removed {removed:,} number(s); {suppression.count():,} on the list.")


@suppress_app.command("list")
def list_numbers(account: str | None = _account_option()) -> None:
    """Print every suppressed number, one per line, sorted."""
    for number in sorted(_suppression(account).members()):
        typer.echo(number)


@suppress_app.command("import")
def import_file(
    file: Path = typer.Argument(..., help="CSV (also .csv.gz) or .xlsx with a phone column."),
    phone_column: str | None = typer.Option(None, "--phone-column", help="Column with the phone numbers."),
    country: str | None = typer.Option(None, "--country", help=_COUNTRY_HELP + " A 'country' column wins."),
    rejects_out: Path | None = typer.Option(None, "--rejects-out", help="Write every skipped row to this CSV."),
    account: str | None = _account_option(),
) -> None:
    """Add every number of a file that a preflight would accept (same phone and country columns); each
    skipped row is reported with its reason."""
    region = parse_region(country)
    if rejects_out is not None:
        writable_output(rejects_out)
    suppression = _suppression(account)
    done = import_numbers(file, suppression, phone_column=phone_column, region=region)
    out.print(f"Imported {done.valid:,} number(s) from {done.file}: {done.added:,} new; "
              f"{suppression.count():,} on the list.")
    if not done.skipped:
        return
    reasons = Counter(r.reason for r in done.skipped)
    detail = "; ".join(f"{reason}: {count:,}" for reason, count in reasons.most_common(5))
    out.print(f"Skipped {len(done.skipped):,} row(s) ({detail}).")
    if rejects_out is not None:
        write_rejects(rejects_out, done.skipped)
        out.print(f"Every skipped row was written to {rejects_out}.")
    shown = done.skipped[:SHOWN_SKIPPED]
    table = Table("row", "value", "reason", title=f"Skipped rows ({len(shown)} of {len(done.skipped):,})",
                  title_justify="left")
    for reject in shown:
        table.add_row(str(reject.row), Text(reject.value), Text(reject.reason))
    out.print(table)
    if len(done.skipped) > len(shown) and rejects_out is None:
        out.print("Use --rejects-out FILE.csv to get every skipped row.")
