"""The shared Typer application object."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="dispatcher",
    help="Bulk SMS campaigns for Instasent, dispatched on Celery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
