"""``dispatcher schedule add|list|remove|run``: recurring campaigns kept in Redis (celery-redbeat)."""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Annotated

import orjson
import typer

from dispatcher.cli._app import app
from dispatcher.cli._common import echo_warning, load_settings
from dispatcher.cli._options import (
    AccountName,
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
    Priority,
    Sender,
    SendWindow,
)
from dispatcher.errors import InputError, UnknownItem
from dispatcher.resources import Resources
from dispatcher.schema.names import DEFAULT_ACCOUNT
from dispatcher.screens import out, print_schedules
from dispatcher.sending import campaigns
from dispatcher.sending.accounts import AccountBook
from dispatcher.sending.schedules.admin import add_schedule, current_campaign, remove_schedule, schedule_rows
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
    account: AccountName = DEFAULT_ACCOUNT,
    window: SendWindow = None,
    days: Days = None,
    expire_after: ExpireAfter = None,
    overlap: str = typer.Option("skip", "--overlap", help="When the previous run still sends: skip or queue."),
    grace: float = typer.Option(DEFAULT_GRACE_S, "--grace", help="Seconds late before a firing counts as missed."),
    priority: Priority = None,
) -> None:
    """Add or replace a schedule; beat picks it up without a restart."""
    definition = ScheduleDef(
        name=name, file=str(file.resolve()), cron=cron, tz=tz,
        every_s=parse_duration(every_spec) if every_spec else None,
        options={"text": text, "text_column": text_column, "sender": sender, "country": country,
                 "phone_column": phone_column, "hlr": hlr, "gsm_only": gsm_only, "max_cost": max_cost},
        account=account,
        window=window, days=days, expire_after_s=parse_duration(expire_after) if expire_after else None,
        overlap=overlap, grace_s=grace, priority=priority or "normal",
    ).validated()
    settings = load_settings()
    resources = Resources.from_settings(settings)
    add_schedule(resources.schedules, _glue(), definition, known_accounts=AccountBook(
        resources.redis, resources.keys, settings).names())
    when = f"cron '{cron}' ({tz})" if cron else f"every {every_spec}"
    lookups = {True: "HLR lookups at each firing", False: "no HLR lookups",
               None: "HLR lookups only when cached (add --hlr to pay for them)"}[hlr]
    out.print(f"Schedule {name} saved: {when}; {lookups}.")


@schedule_app.command("list")
def list_schedules(as_json: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
    """Show every schedule with its window, text, next runs, last run and that run's outcome."""
    resources = Resources.from_settings(load_settings())
    rows = schedule_rows(resources.schedules, store=resources.store)
    if as_json:
        typer.echo(orjson.dumps(rows).decode())
        return
    print_schedules(rows)


@schedule_app.command("remove")
def remove(name: str = typer.Argument(..., help="Schedule name."),
           cancel_current: bool = typer.Option(False, "--cancel-current",
                                               help="Also cancel the campaign it created that has not finished."),
           keep_current: bool = typer.Option(False, "--keep-current",
                                             help="Keep the campaign it created that has not finished (it sends "
                                                  "as planned).")) -> None:
    """Delete a schedule; it never fires again. Its unfinished campaign is kept or cancelled: asked
    at a terminal, else told by --keep-current or --cancel-current (kept, with a warning, when neither)."""
    if cancel_current and keep_current:
        raise InputError("give --cancel-current or --keep-current, not both.")
    settings = load_settings()
    resources = Resources.from_settings(settings)
    current: str | None = "cancel" if cancel_current else "keep" if keep_current else None
    if current is None:
        found = current_campaign(resources.schedules, resources.store, name) if _known(resources, name) else None
        if found is None:
            current = "keep"
        elif sys.stdin.isatty() and sys.stdout.isatty():
            cancel = typer.confirm(f"Schedule {name} has campaign {found['id']} still {found['state']}. Cancel it "
                                   "too? (No keeps it: it sends as planned.)", default=False)
            current = "cancel" if cancel else "keep"
        else:
            # A script that says nothing keeps the campaign, as removal always did, but is told.
            current = "keep"
            echo_warning(f"campaign {found['id']} of schedule {name} is still {found['state']} and is kept: it "
                         f"sends as planned (`dispatcher cancel {found['id']}` stops it; --cancel-current "
                         "cancels it with the schedule).")
    done = remove_schedule(resources.schedules, _glue(), name, store=resources.store, current=current,
                           cancel=lambda cid: campaigns.cancel(resources.store, resources.ops, cid,
                                                               settings.campaign_ttl_s, by="command line"))
    tail = ""
    if done is not None:
        tail = f"; campaign {done['id']} {done['action']}"
    out.print(f"Schedule {name} removed{tail}.")


def _known(resources: Resources, name: str) -> bool:
    try:
        resources.schedules.get(name)
    except UnknownItem:
        return False
    return True


@schedule_app.command("pause")
def pause(name: str = typer.Argument(..., help="Schedule name.")) -> None:
    """Pause a schedule: its firings are recorded as skipped until `schedule resume`."""
    _store(load_settings()).set_paused(name, True)
    out.print(f"Schedule {name} paused; `dispatcher schedule resume {name}` resumes it.")


@schedule_app.command("resume")
def resume(name: str = typer.Argument(..., help="Schedule name.")) -> None:
    """Resume a paused schedule from its next due time (the firings it skipped are not made up)."""
    _store(load_settings()).set_paused(name, False)
    out.print(f"Schedule {name} resumed.")


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
