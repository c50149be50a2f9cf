"""Command-line options shared by ``preflight``, ``submit`` and ``schedule add``, defined once."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from dispatcher.preflight.lookups import Confirm, LookupEstimate
from dispatcher.preflight.result import PreflightOptions
from dispatcher.schema.names import DEFAULT_ACCOUNT

File = Annotated[Path, typer.Argument(help="Recipient list: CSV (also .csv.gz) or Excel .xlsx.")]
MessageText = Annotated[str | None, typer.Option("--text", help="Message text; {column} is replaced per row.")]
MessageTextColumn = Annotated[str | None, typer.Option("--text-column", help="Column holding each row's text.")]
Sender = Annotated[str | None, typer.Option("--from", help="Sender (1..11 characters) for rows without one.")]
Country = Annotated[str | None, typer.Option("--country", help="ISO country for numbers without +/00 (ES, GB...).")]
PhoneColumn = Annotated[str | None, typer.Option("--phone-column", help="Column with the phone numbers.")]
Hlr = Annotated[bool | None, typer.Option(
    "--hlr/--no-hlr",
    help="Pay for HLR lookups (--hlr) or skip them. Without either, the cost is estimated and shown; lookups "
         "are made only when free (all cached) or confirmed at a terminal, never in a script.")]
GsmOnly = Annotated[bool, typer.Option("--gsm-only", help="Reject texts that need Unicode.")]
MaxCost = Annotated[float | None, typer.Option("--max-cost", help="Refuse if the cost exceeds this amount.")]
SendWindow = Annotated[str | None, typer.Option("--window", help="Local send window of each recipient: 09:00-21:00.")]
Days = Annotated[str | None, typer.Option("--days", help="Days of the send window: mon-fri.")]
ExpireAfter = Annotated[str | None, typer.Option("--expire-after", help="Unsent messages expire after: 6h.")]
AccountName = Annotated[str, typer.Option("--account", help="The account to send for (see `dispatcher account "
                                                            "list`); default: INSTASENT_TOKEN's.")]
Priority = Annotated[str | None, typer.Option(
    "--priority", help="Share of its lane against other campaigns: low, normal or high (1:2:4); default normal.")]


def confirm_lookups(as_json: bool = False) -> Confirm | None:
    """A yes/no question about paying for HLR lookups, when a person is at a terminal (never with
    ``--json`` or in a script, where an unasked lookup would spend money unattended)."""
    if as_json or not (sys.stdin.isatty() and sys.stderr.isatty()):
        return None

    def ask(estimate: LookupEstimate) -> bool:
        return typer.confirm(f"Check {estimate.sentence()}. Pay for the HLR lookups?", default=False, err=True)

    return ask


def preflight_options(text: str | None, text_column: str | None, sender: str | None, country: str | None,
                      phone_column: str | None, hlr: bool | None, gsm_only: bool,
                      max_cost: float | None, account: str = DEFAULT_ACCOUNT) -> PreflightOptions:
    """The validated preflight options of a command line.

    Raises:
        InputError: when they contradict each other or are malformed.
    """
    return PreflightOptions(text=text, text_column=text_column, sender=sender, country=country,
                            phone_column=phone_column, hlr=hlr, gsm_only=gsm_only,
                            max_cost=max_cost, account=account).validated()
