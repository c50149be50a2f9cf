"""``dispatcher schedule add|list|remove|run``: recurring campaigns kept in Redis (celery-redbeat)."""

from __future__ import annotations

from types import ModuleType
from typing import Annotated

import orjson
import typer

from dispatcher.cli._app import app
from dispatcher.cli._common import load_settings
from dispatcher.cli._options import (
    Country,
    Days,
    ExpireAfter,
    File,
    GsmOnly,
    Hlr,
    MaxCost,
    MessageText,
    MessageTextColumn,
    PhoneColumn,
    Sender,
    SendWindow,
)
from dispatcher.resources import Resources
from dispatcher.screens import out, print_schedules
from dispatcher.sending.schedules.admin import add_schedule, remove_schedule, schedule_rows
from dispatcher.sending.schedules.definition import DEFAULT_GRACE_S, ScheduleDef
from dispatcher.sending.schedules.store import ScheduleStore
from dispatcher.sending.windows import parse_duration
from dispatcher.settings import Settings

schedule_app = typer.Typer(help="Recurring campaigns: each firing re-reads the file and submits it.",
                           no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")


def _glue() -> ModuleType:
    """``tasks.schedules`` (redbeat entries, the firer), imported only by the commands that need Celery."""
    import tasks.schedules

    return tasks.schedules


def _store(settings: Settings) -> ScheduleStore:
    return Resources.from_settings(settings).schedules


@schedule_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Schedule name (letters, digits, - and _).")],
    file: File,
    cron: str | None = typer.Option(None, "--cron", help="Cron expression, e.g. '0 9 * * MON'."),
    tz: str = typer.Option("UTC", "--tz", help="Time zone of --cron, e.g. Europe/Madrid."),
    every_spec: str | None = typer.Option(None, "--every", help="Fixed interval instead: 90s, 10m, 1h, 1d."),
    text: MessageText = None,
    text_column: MessageTextColumn = None,
    sender: Sender = None,
    country: Country = None,
    phone_column: PhoneColumn = None,
    hlr: Hlr = None,
    gsm_only: GsmOnly = False,
    max_cost: MaxCost = None,
    window: SendWindow = None,
    days: Days = None,
    expire_after: ExpireAfter = None,
    overlap: str = typer.Option("skip", "--overlap", help="When the previous run still sends: skip or queue."),
    grace: float = typer.Option(DEFAULT_GRACE_S, "--grace", help="Seconds late before a firing counts as missed."),
) -> None:
    """Add or replace a schedule; beat picks it up without a restart."""
    definition = ScheduleDef(
        name=name, file=str(file.resolve()), cron=cron, tz=tz,
        every_s=parse_duration(every_spec) if every_spec else None,
        options={"text": text, "text_column": text_column, "sender": sender, "country": country,
                 "phone_column": phone_column, "hlr": hlr, "gsm_only": gsm_only, "max_cost": max_cost},
        window=window, days=days, expire_after_s=parse_duration(expire_after) if expire_after else None,
        overlap=overlap, grace_s=grace,
    ).validated()
    settings = load_settings()
    add_schedule(_store(settings), _glue(), definition)
    when = f"cron '{cron}' ({tz})" if cron else f"every {every_spec}"
    lookups = {True: "HLR lookups at each firing", False: "no HLR lookups",
               None: "HLR lookups only when cached (add --hlr to pay for them)"}[hlr]
    out.print(f"Schedule {name} saved: {when}; {lookups}.")


@schedule_app.command("list")
def list_schedules(as_json: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
    """Show every schedule with its next run, its last run and that run's outcome."""
    rows = schedule_rows(_store(load_settings()))
    if as_json:
        typer.echo(orjson.dumps(rows).decode())
        return
    print_schedules(rows)


@schedule_app.command("remove")
def remove(name: str = typer.Argument(..., help="Schedule name.")) -> None:
    """Delete a schedule; it never fires again (campaigns it created are kept)."""
    remove_schedule(_store(load_settings()), _glue(), name)
    out.print(f"Schedule {name} removed.")


@schedule_app.command("run")
def run_now(name: str = typer.Argument(..., help="Schedule name."),
            as_json: bool = typer.Option(False, "--json", help="Print the firing record as JSON.")) -> None:
    """Fire a schedule now, through the same preflight and guards as a timed firing."""
    settings = load_settings()
    firing = _glue().firer(settings).fire(name, manual=True)
    if as_json:
        typer.echo(orjson.dumps(firing.to_json()).decode())
    else:
        detail = firing.campaign or firing.reason
        out.print(f"Schedule {name} fired: {firing.outcome}" + (f" ({detail})" if detail else "") + ".")
    if firing.outcome in ("refused", "error"):
        raise typer.Exit(3 if "cost" in firing.reason or "balance" in firing.reason else 1)
