"""Campaign commands: submit, status, list, report, pause, resume, cancel."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Task as ProgressTask
from rich.table import Table
from rich.text import Text

from dispatcher.cli._app import app
from dispatcher.cli._common import connect_redis, echo_error, echo_warning, load_settings, out, writable_output
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
    confirm_lookups,
    preflight_options,
)
from dispatcher.keys import Keys
from dispatcher.sending import campaigns, health
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.lifecycle import FINAL, State
from dispatcher.sending.store import CampaignInfo, CampaignStore
from dispatcher.settings import Settings

#: States in which ``--wait`` and ``--watch`` stop watching.
_STOP = {s.value for s in FINAL} | {State.PAUSED.value, State.FAILED.value}


def _store(settings: Settings) -> tuple[CampaignStore, BatchOps]:
    client = connect_redis(settings)
    keys = Keys(settings.key_prefix)
    return CampaignStore(client, keys), BatchOps(client, keys)


def load_enqueuer(settings: Settings) -> campaigns.Enqueuer:
    """The Celery enqueuer, imported by name so that ``dispatcher`` itself never imports Celery."""
    module = importlib.import_module("tasks.enqueue")
    enqueuer: campaigns.Enqueuer = module.CeleryEnqueuer(settings)
    return enqueuer


def _registry(settings: Settings) -> health.WorkerRegistry:
    return health.WorkerRegistry(connect_redis(settings), Keys(settings.key_prefix))


def _print_json(data: Any) -> None:
    typer.echo(orjson.dumps(data).decode())


class _RateColumn(ProgressColumn):
    """Messages per second, as rich measures the task's speed."""

    def render(self, task: ProgressTask) -> Text:
        return Text(f"{task.speed:>8,.0f} msg/s" if task.speed else "       - msg/s")


@app.command()
def status(
    campaign_id: str = typer.Argument(..., help="Campaign id (see `dispatcher list`)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    watch: bool = typer.Option(False, "--watch", help="Show a live progress bar until the campaign stops."),
) -> None:
    """Show where every message of a campaign stands (and say so when no worker runs)."""
    settings = load_settings()
    store, _ = _store(settings)
    registry = _registry(settings)
    if watch and not as_json:
        show_progress(store, registry, campaign_id)
    info = store.get(campaign_id)
    opening = store.next_window_opening(campaign_id)
    workers = registry.alive()
    error = health.last_error(store, campaign_id) if _has_failures(info) else ""
    if as_json:
        _print_json({**info.to_json(), "next_window_opens_at": opening, "workers": len(workers),
                     "last_error": error or None})
        return
    print_status(info, error)
    if opening:
        out.print(f"Next send window opens at {time.strftime('%Y-%m-%d %H:%M', time.localtime(opening))}.")
    if not workers and health.needs_worker(info):
        echo_warning(f"{health.NO_WORKER}.")


@app.command("list")
def list_campaigns(
    limit: int = typer.Option(20, help="How many of the newest campaigns to show."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """List the newest campaigns."""
    store, _ = _store(load_settings())
    infos = store.recent(limit)
    if as_json:
        _print_json([i.to_json() for i in infos])
        return
    out.print(campaign_table(infos))


def campaign_table(infos: list[CampaignInfo]) -> Table:
    """The ``list`` table. The id, what a user copies from it, is never shortened: the name comes
    last and wraps, the date omits the year (a finished campaign's data lives ``campaign_ttl`` days)."""
    rows = []
    for i in infos:
        c = i.counts
        rows.append((i.id, i.state, str(i.total), str(c["sent"]), str(c["rejected"]), str(c["failed"]),
                     str(c["unknown"]), str(c["pending"]), time.strftime("%m-%d %H:%M", time.localtime(i.created_at)),
                     i.name))
    table = Table(box=None, padding=(0, 1, 0, 0), pad_edge=False, header_style="bold")
    headings = ("id", "state", "total", "sent", "rej", "failed", "unk", "pending", "created")
    for j, heading in enumerate(headings):
        width = max([len(heading), *(len(r[j]) for r in rows)])
        table.add_column(heading, no_wrap=True, min_width=width, justify="right" if 2 <= j <= 7 else "left")
    table.add_column("name", overflow="fold")
    for row in rows:
        table.add_row(*row[:-1], Text(row[-1]))
    return table


@app.command()
def report(
    campaign_id: str = typer.Argument(..., help="Campaign id."),
    output: Path | None = typer.Option(
        None, "-o", "--output",
        help="Report file: .csv (for scripts), .xlsx (for spreadsheets) or .parquet. Without it: CSV on stdout."),
) -> None:
    """Write one row per message (row, to, clientId, status, Instasent id, parts, price, error, delivery)."""
    from dispatcher.sending.report import build_report, report_csv, report_format, write_report

    if output is not None:
        report_format(output)  # refuse an unknown format before reading anything
        writable_output(output)
    store, _ = _store(load_settings())
    frame = build_report(store, campaign_id)
    if output is None:
        typer.echo(report_csv(frame), nl=False)
        return
    kind = write_report(frame, output)
    out.print(f"Wrote {len(frame)} messages to {output} ({kind}).")


@app.command()
def pause(campaign_id: str = typer.Argument(..., help="Campaign id.")) -> None:
    """Pause a campaign; batches already with Instasent finish, the rest wait for `resume`."""
    store, _ = _store(load_settings())
    campaigns.pause(store, campaign_id)
    out.print(f"Campaign {campaign_id} paused.")


@app.command()
def resume(campaign_id: str = typer.Argument(..., help="Campaign id.")) -> None:
    """Resume a paused or failed campaign, or recover one whose workers died (safe to repeat)."""
    settings = load_settings()
    store, ops = _store(settings)
    queued = campaigns.resume(store, ops, load_enqueuer(settings), campaign_id)
    out.print(f"Campaign {campaign_id} resumed; {len(queued)} batches queued.")


@app.command()
def cancel(campaign_id: str = typer.Argument(..., help="Campaign id.")) -> None:
    """Cancel a campaign: every message not yet sent becomes `cancelled`."""
    settings = load_settings()
    store, ops = _store(settings)
    n = campaigns.cancel(store, ops, campaign_id, settings.campaign_ttl_s)
    out.print(f"Campaign {campaign_id} cancelled; {n} messages will not be sent.")


def print_status(info: CampaignInfo, last_error: str = "") -> None:
    """A readable summary of one campaign, with the last error a batch recorded when there is one."""
    table = Table(title=f"Campaign {info.id} — {info.name}", show_header=False)
    table.add_row("state", info.state + (f" ({info.reason})" if info.reason else ""))
    if last_error:
        table.add_row("last error", Text(last_error, style="red"))
    table.add_row("messages", str(info.total))
    for name, value in info.counts.items():
        table.add_row(f"  {name}", str(value))
    if info.started_at and info.processed:
        end = info.finished_at or info.updated_at or time.time()
        elapsed = max(1e-3, end - info.started_at)
        table.add_row("rate", f"{info.processed / elapsed:,.0f} messages/s over {elapsed:,.1f} s")
    if info.send_window is not None:
        window = info.send_window.to_json()
        table.add_row("send window", f"{window['start']}-{window['end']} local time")
    if info.waiting:
        table.add_row("waiting for window", f"{info.waiting} messages")
    if info.expires_at:
        table.add_row("expires", time.strftime("%Y-%m-%d %H:%M", time.localtime(info.expires_at)))
    if info.delivery_rate is not None:
        table.add_row("delivered", f"{info.delivery['delivered']} ({info.delivery_rate:.1%} of reported)")
        table.add_row("undelivered", str(info.delivery["undelivered"]))
    table.add_row("estimated cost", f"{info.cost:.4f} {info.currency}")
    out.print(table)


def show_progress(store: CampaignStore, registry: health.WorkerRegistry, cid: str,
                  poll_s: float = 0.5) -> CampaignInfo:
    """Show a live progress bar (rate, ETA, counts) until the campaign completes or stops.

    Raises:
        NoWorker: when no worker runs while the campaign has messages to send.
    """
    info = store.get(cid)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               _RateColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[counts]}"))
    with Progress(*columns, console=out, transient=False) as progress:
        task = progress.add_task(info.name or cid, total=info.total, counts="")

        def update(current: CampaignInfo) -> None:
            c = current.counts
            counts = (f"sent {c['sent']} rejected {c['rejected']} failed {c['failed']} unknown {c['unknown']}"
                      f" [{current.state}]")
            progress.update(task, completed=current.processed, counts=counts)

        return wait_for(store, registry, cid, poll_s=poll_s, on_update=update)


def wait_for(store: CampaignStore, registry: health.WorkerRegistry, cid: str, poll_s: float = 0.2,
             on_update: Callable[[CampaignInfo], None] | None = None,
             worker_check_s: float = 2.0) -> CampaignInfo:
    """Block until the campaign completes or stops, calling ``on_update`` with each reading.

    Every ``worker_check_s`` seconds it checks that a worker is alive (a first one gets
    ``health.FIRST_HEARTBEAT_WAIT_S`` to show up), so that a missing worker is said within seconds.

    Raises:
        NoWorker: when no worker runs while the campaign has messages to send.
    """
    started = time.monotonic()
    checked = started - worker_check_s
    while True:
        info = store.get(cid)
        if on_update is not None:
            on_update(info)
        if info.state in _STOP:
            return info
        now = time.monotonic()
        if now - started >= health.FIRST_HEARTBEAT_WAIT_S and now - checked >= worker_check_s:
            checked = now
            if health.needs_worker(info) and not registry.alive():
                raise health.NoWorker(f"{health.NO_WORKER}; campaign {cid} is saved and starts when one does.")
        time.sleep(poll_s)


def _has_failures(info: CampaignInfo) -> bool:
    c = info.counts
    return bool(c.get("failed") or c.get("unknown") or c.get("rejected")) or health.stopped_badly(info)


def _refuse_bad_end(store: CampaignStore, info: CampaignInfo, as_json: bool) -> None:
    """Show a campaign that stopped without sending, and exit 1 (a script must not take it for a success)."""
    error = health.last_error(store, info.id)
    if as_json:
        _print_json({**info.to_json(), "last_error": error or None})
    else:
        print_status(info, error)
    what = "every message failed" if info.state == "completed" else f"it is {info.state} ({info.reason})"
    echo_error(f"campaign {info.id} did not send: {what}" + (f"; last error: {error}" if error else "") + ".")
    raise typer.Exit(1)


@app.command()
def submit(
    file: File,
    text: MessageText = None,
    text_column: MessageTextColumn = None,
    sender: Sender = None,
    country: Country = None,
    phone_column: PhoneColumn = None,
    hlr: Hlr = None,
    gsm_only: GsmOnly = False,
    max_cost: MaxCost = None,
    name: str | None = typer.Option(None, "--name", help="Campaign name (default: the file name)."),
    window: SendWindow = None,
    days: Days = None,
    expire_after: ExpireAfter = None,
    wait: bool = typer.Option(False, "--wait", help="Show progress until the campaign completes or stops."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (the campaign's status)."),
) -> None:
    """Preflight a recipient list, refuse as the preflight does, then store and dispatch the campaign."""
    from dispatcher.cli.preflight import lookup_progress, print_summary
    from dispatcher.instasent.client import InstasentClient
    from dispatcher.preflight.check import run_preflight
    from dispatcher.sending.windows import parse_duration, parse_window

    send_window = parse_window(window, days) if window else None
    expire_after_s = parse_duration(expire_after) if expire_after else None
    options = preflight_options(text, text_column, sender, country, phone_column, hlr, gsm_only, max_cost)
    settings = load_settings()
    store, ops = _store(settings)
    with InstasentClient.from_settings(settings) as client, lookup_progress() as progress:
        result = run_preflight(file, options, settings=settings, redis=store.redis, client=client,
                               progress=progress, confirm=confirm_lookups(as_json))
    if not as_json:
        print_summary(result)
    cid = campaigns.submit_preflight(store, ops, load_enqueuer(settings), settings, result=result,
                                     options=options, name=name or file.name, send_window=send_window,
                                     expire_after_s=expire_after_s)
    if not as_json:
        out.print(f"Submitted campaign [bold]{cid}[/] ({result.message_count} messages). "
                  f"Watch it with `dispatcher status {cid} --watch`.")
    registry = _registry(settings)
    if not wait:
        if as_json:
            _print_json(store.get(cid).to_json())
        if not registry.alive():
            echo_warning(f"{health.NO_WORKER}.")
        return
    info = wait_for(store, registry, cid) if as_json else show_progress(store, registry, cid)
    if health.stopped_badly(info):
        _refuse_bad_end(store, info, as_json)
    if as_json:
        _print_json(info.to_json())
    else:
        print_status(info, health.last_error(store, cid) if _has_failures(info) else "")
