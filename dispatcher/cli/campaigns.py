"""Campaign commands: submit, status, list, report, pause, resume, cancel."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import typer

from dispatcher.cli._app import app
from dispatcher.cli._common import echo_error, echo_warning, load_enqueuer, load_settings, writable_output
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
    confirm_lookups,
    preflight_options,
)
from dispatcher.resources import Resources
from dispatcher.schema.names import DEFAULT_ACCOUNT
from dispatcher.screens import (
    both_zones,
    campaign_table,
    out,
    print_campaign_summary,
    print_status,
    show_progress,
    wait_for,
)
from dispatcher.sending import campaigns, health, loading
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.chunkstore import Loaded
from dispatcher.sending.enqueuer import Enqueuer
from dispatcher.sending.store import CampaignInfo, CampaignStore
from dispatcher.settings import Settings

#: Who a change made here is recorded as, on the campaign's timeline.
BY_CLI = "command line"


def _store(settings: Settings) -> tuple[CampaignStore, BatchOps]:
    resources = Resources.from_settings(settings)
    return resources.store, resources.ops


def _registry(settings: Settings) -> health.WorkerRegistry:
    resources = Resources.from_settings(settings)
    return health.WorkerRegistry(resources.redis, resources.keys)


def _print_json(data: Any) -> None:
    typer.echo(orjson.dumps(data).decode())


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
    data = campaigns.status(store, campaign_id, settings)
    if as_json:
        _print_json(data)
        return
    info = store.get(campaign_id)
    print_status(info, data["last_error"] or "", loading.progress(store, campaign_id), data)
    opening = data["next_window_opens_at"]
    if opening:
        zone = data["waiting_for"].get("zone") if data["waiting_for"]["kind"] == "window" else None
        out.print(f"Next send window opens at {both_zones(opening, zone)}.")
    print_watchdog(info, data["last_sweep"])
    if data["no_worker"]:
        echo_warning(f"{health.NO_WORKER}.")


def print_watchdog(info: CampaignInfo, sweep: dict[str, Any] | None) -> None:
    """One line on the watchdog: its last sweep anywhere, and its last re-drive of this campaign."""
    if sweep is None:
        out.print("Watchdog: no sweep yet (workers run one every DISPATCHER_WATCHDOG_EVERY seconds).")
        return
    line = f"Watchdog: last sweep at {time.strftime('%H:%M:%S', time.localtime(sweep['at']))}"
    if info.watchdog:
        at = time.strftime("%H:%M:%S", time.localtime(info.watchdog["at"]))
        line += f"; it re-drove {int(info.watchdog['batches'])} stranded batch(es) of this campaign at {at}"
    if sweep.get("data_lost"):
        line += "; it found that Redis had lost its data"
    out.print(line + ".")


@app.command("list")
def list_campaigns(
    limit: int = typer.Option(20, help="How many of the newest campaigns to show."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """List the newest campaigns."""
    store, _ = _store(load_settings())
    infos = store.recent(limit)
    if as_json:
        shares = campaigns.lane_shares(store, infos)
        _print_json([{**i.to_json(), "share": shares.get(i.id)} for i in infos])
        return
    out.print(campaign_table(infos))


@app.command()
def report(
    campaign_id: str = typer.Argument(..., help="Campaign id."),
    output: Path | None = typer.Option(
        None, "-o", "--output",
        help="Report file: .csv (for scripts), .xlsx (for spreadsheets) or .parquet. Without it: CSV on stdout."),
    summary: bool = typer.Option(False, "--summary", help="Show the campaign report: text, sender, delivery "
                                 "rates, undelivered by code, actual cost, countries, timeline."),
    as_json: bool = typer.Option(False, "--json", help="Print the campaign report as one JSON object."),
) -> None:
    """Write one row per message (row, to, clientId, status, Instasent id, parts, price, error, delivery,
    report code); with --summary, the campaign report instead (rates, costs, countries, timeline)."""
    from dispatcher.sending.report import iter_report_csv, report_format, stream_report

    if summary or as_json:
        from dispatcher.sending.summary import campaign_summary

        store, _ = _store(load_settings())
        data = campaign_summary(store, campaign_id)
        if as_json:
            _print_json(data)
        else:
            print_campaign_summary(data)
        return
    if output is not None:
        report_format(output)  # refuse an unknown format before reading anything
        writable_output(output)
    store, _ = _store(load_settings())
    store.get(campaign_id)  # one sentence for an unknown id, before a file is made
    if output is None:
        for piece in iter_report_csv(store, campaign_id):
            typer.echo(piece, nl=False)
        return
    kind, count = stream_report(store, campaign_id, output)
    out.print(f"Wrote {count} messages to {output} ({kind}).")


@app.command()
def rejects(
    campaign_id: str = typer.Argument(..., help="Campaign id."),
    output: Path = typer.Option(..., "-o", "--output", help="File for the rejected rows: .csv, .xlsx or .parquet."),
) -> None:
    """Write the rows of a submitted campaign's list that were not sent (row, value, reason)."""
    from dispatcher.sending.report import campaign_rejects_format, write_campaign_rejects

    campaign_rejects_format(output)  # refuse an unknown format before reading anything
    writable_output(output)
    store, _ = _store(load_settings())
    kind, count = write_campaign_rejects(store, campaign_id, output)
    out.print(f"Wrote {count:,} rejected rows to {output} ({kind}).")


@app.command()
def pause(campaign_id: str = typer.Argument(..., help="Campaign id.")) -> None:
    """Pause a campaign; batches already with Instasent finish, the rest wait for `resume`."""
    store, _ = _store(load_settings())
    campaigns.pause(store, campaign_id, by=BY_CLI)
    out.print(f"Campaign {campaign_id} paused.")


@app.command()
def resume(campaign_id: str = typer.Argument(..., help="Campaign id.")) -> None:
    """Resume a paused or failed campaign, or recover one whose workers died (safe to repeat)."""
    settings = load_settings()
    store, ops = _store(settings)
    enqueuer = load_enqueuer(settings)
    queued = campaigns.resume(store, ops, enqueuer, campaign_id, by=BY_CLI)
    out.print(f"Campaign {campaign_id} resumed; {len(queued)} batches queued.")
    _continue_loading(store, ops, enqueuer, settings, campaign_id)


def _continue_loading(store: CampaignStore, ops: BatchOps, enqueuer: Enqueuer, settings: Settings,
                      campaign_id: str) -> None:
    """Load the rest of a campaign's list here when nobody is loading it (an interrupted submit)."""
    from dispatcher.instasent.client import InstasentClient
    from dispatcher.sending import submission

    load = loading.progress(store, campaign_id)
    if load is None:
        return
    if not load.interrupted:
        out.print(f"Its list is still loading in another process ({load.describe()}).")
        return
    out.print(f"Loading its list from row {load.loaded_row + 1:,} ({load.stored:,} messages already stored).")
    account = submission.account_of(settings, store.redis, store.get(campaign_id).account).settings
    with InstasentClient.from_settings(account) as client:
        loaded = loading.load(store, ops, enqueuer, campaign_id, client=client, settings=account)
    out.print(_loaded_sentence(campaign_id, loaded))


@app.command()
def cancel(campaign_id: str = typer.Argument(..., help="Campaign id.")) -> None:
    """Cancel a campaign: every message not yet sent becomes `cancelled`."""
    settings = load_settings()
    store, ops = _store(settings)
    n = campaigns.cancel(store, ops, campaign_id, settings.campaign_ttl_s, by=BY_CLI)
    out.print(f"Campaign {campaign_id} cancelled; {n} messages will not be sent.")


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
    account: AccountName = DEFAULT_ACCOUNT,
    name: str | None = typer.Option(None, "--name", help="Campaign name (default: the file name)."),
    window: SendWindow = None,
    days: Days = None,
    expire_after: ExpireAfter = None,
    wait: bool = typer.Option(False, "--wait", help="Show progress until the campaign completes or stops."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (the campaign's status)."),
    chunk_rows: int = typer.Option(50_000, "--chunk-rows", min=100,
                                   help="Rows read, checked and stored at a time (memory grows with it)."),
    keep_columns: str | None = typer.Option(None, "--keep-columns",
                                            help="Carry these columns of the list into the report: name,name "
                                                 "or all."),
    rejects_out: Path | None = typer.Option(None, "--rejects-out",
                                            help="Also write the rows that will not be sent: .csv, .xlsx or .parquet."),
    priority: Priority = None,
) -> None:
    """Preflight a recipient list, refuse as the preflight does, then store and dispatch the campaign.

    Without HLR, when a fast upper bound of the cost fits the balance and --max-cost, the list is
    checked and stored in one pass and the summary comes at the end; otherwise it is checked in a
    pass that keeps no rows (the budget guard refuses before anything is stored), then stored chunk
    by chunk. Either way sending starts with the first chunk.
    """
    from dispatcher.preflight.bound import CostBound
    from dispatcher.preflight.pricing import money
    from dispatcher.preflight.result import PreflightResult
    from dispatcher.screens import lookup_progress, print_summary
    from dispatcher.sending import submission
    from dispatcher.sending.durability import Epoch, check_persistence

    options = submission.SubmitOptions(
        preflight_options(text, text_column, sender, country, phone_column, hlr, gsm_only, max_cost, account),
        name=name or file.name, window=window, days=days, expire_after=expire_after,
        keep_columns=keep_columns, priority=priority).validated()
    if rejects_out is not None:
        from dispatcher.sending.report import campaign_rejects_format

        campaign_rejects_format(rejects_out)
        writable_output(rejects_out)
    settings = load_settings()
    store, ops = _store(settings)
    check_persistence(store.redis, settings)
    Epoch(store.redis, store.keys).check()

    def counted(result: PreflightResult) -> None:
        if not as_json:
            print_summary(result)

    def bounded(bound: CostBound, balance: float, currency: str) -> None:
        if not as_json:
            limit = f"the balance ({money(balance, currency)})"
            if options.preflight.max_cost is not None:
                limit += f" and --max-cost ({money(options.preflight.max_cost, currency)})"
            out.print(f"The messages cost at most {money(bound.cost, currency)}, within {limit}: the list is "
                      "checked and stored in one pass; its summary follows once it is loaded.")

    def created(campaign_id: str) -> None:
        if not as_json:
            out.print(f"Submitted campaign [bold]{campaign_id}[/]; sending starts while the list loads. "
                      f"Watch it with `dispatcher status {campaign_id} --watch`.")

    with lookup_progress() as progress:
        campaign_id, _, loaded = submission.submit(
            store, ops, load_enqueuer(settings), settings, file, options, progress=progress,
            confirm=confirm_lookups(as_json), on_counted=counted, on_bound=bounded, on_created=created,
            chunk_rows=chunk_rows)
    if not as_json:
        out.print(_loaded_sentence(campaign_id, loaded))
    if rejects_out is not None:
        from dispatcher.sending.report import write_campaign_rejects

        kind, count = write_campaign_rejects(store, campaign_id, rejects_out)
        if not as_json:
            out.print(f"Wrote {count:,} rejected rows to {rejects_out} ({kind}).")
    registry = _registry(settings)
    if not wait or loaded.outcome != "complete":
        if as_json:
            _print_json(campaigns.status(store, campaign_id, settings))
        if not registry.alive():
            echo_warning(f"{health.NO_WORKER}.")
        return
    info = wait_for(store, registry, campaign_id) if as_json else show_progress(store, registry, campaign_id)
    if health.stopped_badly(info):
        _refuse_bad_end(store, info, as_json)
    if as_json:
        _print_json(campaigns.status(store, campaign_id, settings))
    else:
        print_status(info, health.last_error(store, campaign_id) if _has_failures(info) else "")


def _loaded_sentence(campaign_id: str, loaded: Loaded) -> str:
    """What became of the loading, in one sentence."""
    if loaded.outcome == "complete":
        return f"Campaign {campaign_id}: all {loaded.stored:,} messages stored."
    if loaded.outcome == "stopped":
        return (f"Campaign {campaign_id} is {loaded.state}: loading stopped; `dispatcher resume {campaign_id}` "
                "continues it.")
    return f"Campaign {campaign_id}: another process took over loading it."
