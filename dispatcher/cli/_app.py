"""The shared Typer application object, with the options that belong to no command (``--version``)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

import typer

import dispatcher

app = typer.Typer(
    name="dispatcher",
    help="Bulk SMS campaigns for Instasent, dispatched on Celery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def installed_version() -> str:
    """The installed package's version (the source tree's when it is not installed)."""
    try:
        return package_version("dispatcher")
    except PackageNotFoundError:
        return dispatcher.__version__


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"dispatcher {installed_version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_show_version,
                                 help="Print the version and exit."),
) -> None:
    """Bulk SMS campaigns for Instasent, dispatched on Celery."""
