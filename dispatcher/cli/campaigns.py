"""Campaign commands: submit, status, list, report, pause, resume, cancel."""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from dispatcher.cli._common import connect_redis, load_settings, out
from dispatcher.cli._options import (
    Country,
    Days,
    ExpireAfter,
    File,
    GsmOnly,
    MaxCost,
    MessageText,
    MessageTextColumn,
    NoHlr,
    PhoneColumn,
    Sender,
    SendWindow,
    preflight_options,
)
from dispatcher.keys import Keys
from dispatcher.sending import campaigns
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.lifecycle import FINAL, State
from dispatcher.sending.store import CampaignInfo, CampaignStore
from dispatcher.settings import Settings

if TYPE_CHECKING:
    from dispatcher.sending.loading import Loaded

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
    """Show where every message of a campaign stands."""
    store, _ = _store(load_settings())
    if watch and not as_json:
        show_progress(store, campaign_id)
    info = store.get(campaign_id)
    opening = store.next_window_opening(campaign_id)
    if as_json:
        _print_json({**status_json(store, info), "next_window_opens_at": opening})
    else:
        print_status(info, store)
        if opening:
            out.print(f"Next send window opens at {time.strftime('%Y-%m-%d %H:%M', time.localtime(opening))}.")


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
    table = Table("id", "name", "state", "total", "sent", "rejected", "failed", "unknown", "pending", "created")
    for i in infos:
        c = i.counts
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(i.created_at))
        table.add_row(i.id, i.name, i.state, str(i.total), str(c["sent"]), str(c["rejected"]), str(c["failed"]),
                      str(c["unknown"]), str(c["pending"]), created)
    out.print(table)


@app.command()
def report(
    campaign_id: str = typer.Argument(..., help="Campaign id."),
    output: Path = typer.Option(..., "-o", "--output", help="Report file: .csv or .parquet."),
) -> None:
    """Write one row per message (row, to, clientId, status, Instasent id, parts, price, error)."""
    from dispatcher.sending.report import stream_report

    store, _ = _store(load_settings())
    store.get(campaign_id)  # one sentence for an unknown id, before a file is made
    kind, count = stream_report(store, campaign_id, output)
    out.print(f"Wrote {count} messages to {output} ({kind}).")


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
    enqueuer = load_enqueuer(settings)
    queued = campaigns.resume(store, ops, enqueuer, campaign_id)
    out.print(f"Campaign {campaign_id} resumed; {len(queued)} batches queued.")
    _continue_loading(store, ops, enqueuer, settings, campaign_id)


def _continue_loading(store: CampaignStore, ops: BatchOps, enqueuer: campaigns.Enqueuer, settings: Settings,
                      cid: str) -> None:
    """Load the rest of a campaign's list here when nobody is loading it (an interrupted submit)."""
    from dispatcher.instasent.client import InstasentClient
    from dispatcher.sending import loading

    load = loading.progress(store, cid)
    if load is None:
        return
    if not load.interrupted:
        out.print(f"Its list is still loading in another process ({load.describe()}).")
        return
    out.print(f"Loading its list from row {load.loaded_row + 1:,} ({load.stored:,} messages already stored).")
    with InstasentClient.from_settings(settings) as client:
        loaded = loading.load(store, ops, enqueuer, cid, client=client, settings=settings)
    out.print(_loaded_sentence(cid, loaded))


@app.command()
def cancel(campaign_id: str = typer.Argument(..., help="Campaign id.")) -> None:
    """Cancel a campaign: every message not yet sent becomes `cancelled`."""
    settings = load_settings()
    store, ops = _store(settings)
    n = campaigns.cancel(store, ops, campaign_id, settings.campaign_ttl_s)
    out.print(f"Campaign {campaign_id} cancelled; {n} messages will not be sent.")


def print_status(info: CampaignInfo, store: CampaignStore | None = None) -> None:
    """A readable summary of one campaign (with ``store``, also how its list is loading)."""
    from dispatcher.sending.loading import progress

    table = Table(title=f"Campaign {info.id} — {info.name}", show_header=False)
    table.add_row("state", info.state + (f" ({info.reason})" if info.reason else ""))
    load = progress(store, info.id) if store is not None else None
    if load is not None:
        table.add_row("list", load.describe().replace("ID", info.id))
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


def show_progress(store: CampaignStore, cid: str, poll_s: float = 0.5) -> CampaignInfo:
    """Show a live progress bar (rate, ETA, counts) until the campaign completes or stops."""
    info = store.get(cid)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               _RateColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[counts]}"))
    with Progress(*columns, console=out, transient=False) as progress:
        task = progress.add_task(info.name or cid, total=info.total, counts="")
        while True:
            info = store.get(cid)
            c = info.counts
            counts = (f"sent {c['sent']} rejected {c['rejected']} failed {c['failed']} unknown {c['unknown']}"
                      f" [{info.state}]")
            progress.update(task, completed=info.processed, counts=counts)
            if info.state in _STOP:
                break
            time.sleep(poll_s)
    return info


def wait_for(store: CampaignStore, cid: str, show: bool, poll_s: float = 0.2) -> CampaignInfo:
    """Block until the campaign completes or stops; with ``show``, draw the progress bar."""
    if show:
        return show_progress(store, cid)
    while (info := store.get(cid)).state not in _STOP:
        time.sleep(poll_s)
    return info


@app.command()
def submit(
    file: File,
    text: MessageText = None,
    text_column: MessageTextColumn = None,
    sender: Sender = None,
    country: Country = None,
    phone_column: PhoneColumn = None,
    no_hlr: NoHlr = False,
    gsm_only: GsmOnly = False,
    max_cost: MaxCost = None,
    name: str | None = typer.Option(None, "--name", help="Campaign name (default: the file name)."),
    window: SendWindow = None,
    days: Days = None,
    expire_after: ExpireAfter = None,
    wait: bool = typer.Option(False, "--wait", help="Show progress until the campaign completes or stops."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (the campaign's status)."),
    chunk_rows: int = typer.Option(50_000, "--chunk-rows", min=100,
                                   help="Rows read, checked and stored at a time (memory grows with it)."),
) -> None:
    """Preflight a recipient list, refuse as the preflight does, then store and dispatch the campaign.

    The list is checked in one pass that keeps no rows (the budget guard refuses before anything is
    stored), then stored chunk by chunk: sending starts with the first chunk.
    """
    from dispatcher.cli.preflight import lookup_progress, print_summary
    from dispatcher.instasent.client import InstasentClient
    from dispatcher.preflight.result import PreflightResult
    from dispatcher.sending import loading
    from dispatcher.sending.windows import parse_duration, parse_window

    send_window = parse_window(window, days) if window else None
    expire_after_s = parse_duration(expire_after) if expire_after else None
    options = preflight_options(text, text_column, sender, country, phone_column, no_hlr, gsm_only, max_cost)
    settings = load_settings()
    store, ops = _store(settings)

    def counted(result: PreflightResult) -> None:
        if not as_json:
            print_summary(result)

    def created(cid: str) -> None:
        if not as_json:
            out.print(f"Submitted campaign [bold]{cid}[/]; sending starts while the list loads. "
                      f"Watch it with `dispatcher status {cid} --watch`.")

    with InstasentClient.from_settings(settings) as client, lookup_progress() as progress:
        cid, _, loaded = loading.submit_file(store, ops, load_enqueuer(settings), settings, path=file,
                                             options=options, client=client, name=name or file.name,
                                             send_window=send_window, expire_after_s=expire_after_s,
                                             progress_cb=progress, on_counted=counted, on_created=created,
                                             chunk_rows=chunk_rows)
    if not as_json:
        out.print(_loaded_sentence(cid, loaded))
    info = wait_for(store, cid, show=not as_json) if wait and loaded.outcome == "complete" else store.get(cid)
    if as_json:
        _print_json(status_json(store, info))
    elif wait:
        print_status(info)


def _loaded_sentence(cid: str, loaded: Loaded) -> str:
    """What became of the loading, in one sentence."""
    if loaded.outcome == "complete":
        return f"Campaign {cid}: all {loaded.stored:,} messages stored."
    if loaded.outcome == "stopped":
        return f"Campaign {cid} is {loaded.state}: loading stopped; `dispatcher resume {cid}` continues it."
    return f"Campaign {cid}: another process took over loading it."


def status_json(store: CampaignStore, info: CampaignInfo) -> dict[str, Any]:
    """``status --json``: the campaign, and its loading progress while its list still loads."""
    from dispatcher.sending.loading import progress

    load = progress(store, info.id)
    return {**info.to_json(), "loading": load.to_json() if load else None}
