"""Command-line options shared by ``preflight``, ``submit`` and ``schedule add``, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dispatcher.preflight.result import PreflightOptions

File = Annotated[Path, typer.Argument(help="Recipient list: CSV (also .csv.gz) or Excel .xlsx.")]
MessageText = Annotated[str | None, typer.Option("--text", help="Message text; {column} is replaced per row.")]
MessageTextColumn = Annotated[str | None, typer.Option("--text-column", help="Column holding each row's text.")]
Sender = Annotated[str | None, typer.Option("--from", help="Sender (1..11 characters) for rows without one.")]
Country = Annotated[str | None, typer.Option("--country", help="ISO country for numbers without +/00 (ES, GB...).")]
PhoneColumn = Annotated[str | None, typer.Option("--phone-column", help="Column with the phone numbers.")]
NoHlr = Annotated[bool, typer.Option("--no-hlr", help="Skip the HLR lookups.")]
GsmOnly = Annotated[bool, typer.Option("--gsm-only", help="Reject texts that need Unicode.")]
MaxCost = Annotated[float | None, typer.Option("--max-cost", help="Refuse if the cost exceeds this amount.")]
SendWindow = Annotated[str | None, typer.Option("--window", help="Local send window of each recipient: 09:00-21:00.")]
Days = Annotated[str | None, typer.Option("--days", help="Days of the send window: mon-fri.")]
ExpireAfter = Annotated[str | None, typer.Option("--expire-after", help="Unsent messages expire after: 6h.")]


def preflight_options(text: str | None, text_column: str | None, sender: str | None, country: str | None,
                      phone_column: str | None, no_hlr: bool, gsm_only: bool,
                      max_cost: float | None) -> PreflightOptions:
    """The validated preflight options of a command line.

    Raises:
        InputError: when they contradict each other or are malformed.
    """
    return PreflightOptions(text=text, text_column=text_column, sender=sender, country=country,
                            phone_column=phone_column, hlr=not no_hlr, gsm_only=gsm_only,
                            max_cost=max_cost).validated()
