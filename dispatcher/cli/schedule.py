"""``dispatcher schedule add|list|remove|run``: recurring campaigns kept in Redis (celery-redbeat)."""

from __future__ import annotations

import importlib
import time
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import orjson
import typer
from rich.table import Table

from dispatcher.cli._app import app
from dispatcher.cli._common import connect_redis, load_settings, out
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
from dispatcher.keys import Keys
from dispatcher.preflight.check import check_file
from dispatcher.preflight.result import PreflightOptions
from dispatcher.sending.schedules import DEFAULT_GRACE_S, ScheduleDef, ScheduleStore
from dispatcher.sending.windows import parse_duration
from dispatcher.settings import Settings

schedule_app = typer.Typer(help="Recurring campaigns: each firing re-reads the file and submits it.",
                           no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")


def _glue() -> Any:
    """``tasks.schedules``, imported by name so that ``dispatcher`` itself never imports Celery."""
    return importlib.import_module("tasks.schedules")


def _store(settings: Settings) -> ScheduleStore:
    return ScheduleStore(connect_redis(settings), Keys(settings.key_prefix))


def _when(ts: float | None, tz: str) -> str:
    """``ts`` (Unix s) in the schedule's own zone, with the zone's abbreviation or offset."""
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S %Z") if ts else "-"


def _iso(ts: float | None, tz: str) -> str | None:
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).isoformat(timespec="seconds") if ts else None


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
    # The firing checks again (the file may change), but a schedule that cannot work is refused now.
    check_file(definition.file, PreflightOptions(**definition.options))
    settings = load_settings()
    _store(settings).save(definition)
    _glue().save_entry(definition)
    when = f"cron '{cron}' ({tz})" if cron else f"every {every_spec}"
    lookups = {True: "HLR lookups at each firing", False: "no HLR lookups",
               None: "HLR lookups only when cached (add --hlr to pay for them)"}[hlr]
    out.print(f"Schedule {name} saved: {when}; {lookups}.")


@schedule_app.command("list")
def list_schedules(as_json: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
    """Show every schedule with its next run, its last run and that run's outcome."""
    store = _store(load_settings())
    now = time.time()
    rows: list[dict[str, Any]] = []
    for name in store.names():
        definition = store.get(name)
        state = store.state(name)
        last_due = float(state["last_due"]) if state.get("last_due") else None
        since = float(state["since"]) if state.get("since") else None
        runs = store.runs(name, 5)
        next_run = definition.next_due(now, last_due, since)
        last_run = runs[0].at if runs else None
        rows.append({"name": name, "file": definition.file, "cron": definition.cron, "tz": definition.tz,
                     "every_s": definition.every_s, "next_run": next_run,
                     "next_run_local": _iso(next_run, definition.tz), "last_run": last_run,
                     "last_run_local": _iso(last_run, definition.tz), "last_outcome": runs[0].outcome if runs else None,
                     "last_campaign": runs[0].campaign if runs else None,
                     "last_reason": runs[0].reason if runs else None, "runs": [r.to_json() for r in runs]})
    if as_json:
        typer.echo(orjson.dumps(rows).decode())
        return
    table = Table("name", "when", "next run", "last run", "outcome", "campaign / reason")
    for r in rows:
        when = f"{r['cron']} {r['tz']}" if r["cron"] else f"every {r['every_s']:g}s"
        table.add_row(str(r["name"]), when, _when(r["next_run"], str(r["tz"])), _when(r["last_run"], str(r["tz"])),
                      str(r["last_outcome"] or "-"), str(r["last_campaign"] or r["last_reason"] or ""))
    out.print(table)


@schedule_app.command("remove")
def remove(name: str = typer.Argument(..., help="Schedule name.")) -> None:
    """Delete a schedule; it never fires again (campaigns it created are kept)."""
    settings = load_settings()
    _store(settings).remove(name)
    _glue().delete_entry(name)
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
