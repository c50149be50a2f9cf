"""What the CLI and the demo print: the consoles, a campaign's status and live progress, the
preflight summary and the schedule table. Plain functions over the library's results, so that
``dispatcher.dev`` shows the same screens without importing the CLI."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
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

from dispatcher.preflight.hlr import Progress as ProgressCallback
from dispatcher.preflight.result import PreflightResult, money
from dispatcher.sending.lifecycle import FINAL, State
from dispatcher.sending.store import CampaignInfo, CampaignStore

if TYPE_CHECKING:
    from dispatcher.sending.loading import LoadProgress

#: Console for normal output (stdout) and for errors (stderr).
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

#: States in which ``--wait`` and ``--watch`` stop watching.
STOP = {s.value for s in FINAL} | {State.PAUSED.value, State.FAILED.value}
#: Rejected rows listed in the readable preflight summary (all of them go to --json and --rejects-out).
SHOWN_REJECTS = 15


def redact_url(url: str) -> str:
    """Hide the password of a URL such as ``redis://:secret@host:6379/0``."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1****@", url)


# -- campaigns -----------------------------------------------------------------------------------


def print_status(info: CampaignInfo, load: LoadProgress | None = None) -> None:
    """A readable summary of one campaign (and of its list's loading, while it loads)."""
    table = Table(title=f"Campaign {info.id} — {info.name}", show_header=False)
    table.add_row("state", info.state + (f" ({info.reason})" if info.reason else ""))
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


def show_progress(store: CampaignStore, campaign_id: str, poll_s: float = 0.5) -> CampaignInfo:
    """Show a live progress bar (rate, ETA, counts) until the campaign completes or stops."""
    info = store.get(campaign_id)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               _RateColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[counts]}"))
    with Progress(*columns, console=out, transient=False) as progress:
        task = progress.add_task(info.name or campaign_id, total=info.total, counts="")
        while True:
            info = store.get(campaign_id)
            c = info.counts
            counts = (f"sent {c['sent']} rejected {c['rejected']} failed {c['failed']} unknown {c['unknown']}"
                      f" [{info.state}]")
            progress.update(task, completed=info.processed, counts=counts)
            if info.state in STOP:
                break
            time.sleep(poll_s)
    return info


def wait_for(store: CampaignStore, campaign_id: str, show: bool, poll_s: float = 0.2) -> CampaignInfo:
    """Block until the campaign completes or stops; with ``show``, draw the progress bar."""
    if show:
        return show_progress(store, campaign_id)
    while (info := store.get(campaign_id)).state not in STOP:
        time.sleep(poll_s)
    return info


class _RateColumn(ProgressColumn):
    """Messages per second, as rich measures the task's speed."""

    def render(self, task: ProgressTask) -> Text:
        return Text(f"{task.speed:>8,.0f} msg/s" if task.speed else "       - msg/s")


# -- preflight -------------------------------------------------------------------------------------


@contextmanager
def lookup_progress() -> Iterator[ProgressCallback]:
    """A progress bar for the lookups on stderr (shown only on a terminal)."""
    bar = Progress(TextColumn("HLR lookups"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=err, transient=True, disable=not err.is_terminal)
    task = bar.add_task("lookups", total=None, visible=False)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total, visible=total > 0)

    with bar:
        yield update


def print_summary(result: PreflightResult, rejects_out: Path | None = None) -> None:
    """The readable summary: totals, the countries, the reasons and the first rejected rows."""
    out.print(_totals(result))
    if result.by_country:
        out.print(_countries(result))
    if result.rejects:
        out.print(_reasons(result))
        out.print(_first_rejects(result))
        if rejects_out is not None:
            out.print(f"All {len(result.rejects):,} rejected rows were written to {rejects_out}.")
        elif len(result.rejects) > SHOWN_REJECTS:
            out.print("Use --rejects-out FILE.csv to get every rejected row.")


def _totals(result: PreflightResult) -> Table:
    table = Table(title=Text(f"Preflight of {result.file}"), show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    currency = result.currency
    table.add_row("File", Text(f"{result.source}, phone column {result.phone_column!r}"))
    table.add_row("Rows", f"{result.rows:,}")
    table.add_row("Messages to send", f"{result.valid:,}")
    table.add_row("SMS parts", f"{result.parts:,} ({result.unicode:,} messages need Unicode)")
    table.add_row("Rejected rows", f"{result.rejected:,}")
    table.add_row("Duplicates (kept once)", f"{result.duplicates:,}")
    table.add_row("Suppressed", f"{result.suppressed:,}")
    table.add_row("HLR lookups", f"{result.lookups:,} paid, {result.lookups_cached:,} from cache")
    table.add_row("Cost of messages", money(result.message_cost, currency))
    table.add_row("Cost of lookups", money(result.lookup_cost, currency))
    table.add_row("Total cost", Text(money(result.cost, currency), style="bold"))
    table.add_row("Balance", money(result.balance, currency))
    return table


def _countries(result: PreflightResult) -> Table:
    table = Table(title="By country", title_justify="left")
    for name in ("Country", "Messages", "Parts", "Lookups", "Cost"):
        table.add_column(name, justify="left" if name == "Country" else "right")
    for country, summary in sorted(result.by_country.items(), key=lambda item: -item[1].cost):
        table.add_row(country, f"{summary.messages:,}", f"{summary.parts:,}", f"{summary.lookups:,}",
                      money(summary.cost, result.currency))
    return table


def _reasons(result: PreflightResult) -> Table:
    table = Table(title="Rejected rows by reason", title_justify="left")
    table.add_column("Reason")
    table.add_column("Rows", justify="right")
    for reason, count in Counter(r.reason for r in result.rejects).most_common():
        table.add_row(Text(reason), f"{count:,}")
    return table


def _first_rejects(result: PreflightResult) -> Table:
    shown = result.rejects[:SHOWN_REJECTS]
    table = Table(title=f"First {len(shown)} of {len(result.rejects):,} rejected rows", title_justify="left")
    table.add_column("Row", justify="right")
    table.add_column("Value")
    table.add_column("Reason")
    for reject in shown:
        table.add_row(str(reject.row), Text(reject.value), Text(reject.reason))
    return table


# -- schedules -----------------------------------------------------------------------------------


def print_schedules(rows: list[dict[str, Any]]) -> None:
    """The schedule table, from :func:`schedule_rows`."""
    table = Table("name", "when", "next run", "last run", "outcome", "campaign / reason")
    for r in rows:
        when = f"{r['cron']} {r['tz']}" if r["cron"] else f"every {r['every_s']:g}s"
        table.add_row(str(r["name"]), when, _when(r["next_run"]), _when(r["last_run"]),
                      str(r["last_outcome"] or "-"), str(r["last_campaign"] or r["last_reason"] or ""))
    out.print(table)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"
