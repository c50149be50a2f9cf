"""What the CLI and the demo print: the consoles, a campaign's status and live progress, the
preflight summary and the schedule table. Plain functions over the library's results, so that
``dispatcher.dev`` shows the same screens without importing the CLI.

A front helper: it sits on its own floor, above the library and under the fronts that print with
it (``tests/test_layering.py``), so it imports the library and never a front.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

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

from dispatcher.money import shown as shown_money
from dispatcher.money import unit as unit_price
from dispatcher.preflight.hlr import Progress as ProgressCallback
from dispatcher.preflight.pricing import money
from dispatcher.preflight.result import PreflightResult
from dispatcher.schema.names import FINAL, State
from dispatcher.sending import health
from dispatcher.sending.health import WorkerRegistry
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


def print_status(info: CampaignInfo, last_error: str = "", load: LoadProgress | None = None,
                 data: dict[str, Any] | None = None) -> None:
    """A readable summary of one campaign, with the last error a batch recorded when there is one
    and how its list is loading while it loads; with ``data`` (``campaigns.status``'s object) also
    what it waits for, when it should finish (in the recipients' zone and this machine's) and its
    actual cost beside the estimate."""
    table = Table(title=f"Campaign {info.id} — {info.name}", show_header=False)
    table.add_row("state", info.state + (f" ({info.reason})" if info.reason else ""))
    table.add_row("account", Text(info.account + (f" (organization {info.organization})" if info.organization else "")))
    waiting = (data or {}).get("waiting_for") or {}
    if waiting.get("sentence"):
        table.add_row("waiting for", Text(str(waiting["sentence"]), style="yellow"))
    if load is not None:
        table.add_row("list", load.describe().replace("ID", info.id))
    if last_error:
        table.add_row("last error", Text(last_error, style="red"))
    if info.options.get("sender"):
        table.add_row("sender", Text(str(info.options["sender"])))
    if info.options.get("text"):
        table.add_row("text", Text(str(info.options["text"])))
    elif info.options.get("text_column"):
        table.add_row("text", Text(f"from column {info.options['text_column']}"))
    table.add_row("messages", str(info.total))
    for name, value in info.counts.items():
        table.add_row(f"  {name}", str(value))
    if info.started_at and info.processed:
        end = info.finished_at or info.updated_at or time.time()
        elapsed = end - info.started_at
        # Under a second (a sandbox run) the division says nothing: "2,703 messages/s over 0.0 s".
        table.add_row("rate", f"{info.processed / elapsed:,.0f} messages/s over {elapsed:,.0f} s" if elapsed >= 1
                      else f"{info.processed:,} messages in under a second")
    share = (data or {}).get("share")
    if share:
        table.add_row("priority", f"{info.priority} (weight {share['weight']}"
                      + (f" of {share['lane_weight']} sending in its lane)" if share.get("lane_weight") else ")"))
        taken = (f"{share['fraction']:.0%} of its lane's bulk requests in the last {share['span_s']} s "
                 f"({share['requests']:,} of {share['lane_requests']:,})" if share["fraction"] is not None
                 else f"no bulk request in its lane in the last {share['span_s']} s")
        table.add_row("share", taken)
    elif info.priority != "normal":
        table.add_row("priority", info.priority)
    if info.send_window is not None:
        window = info.send_window.to_json()
        table.add_row("send window", f"{window['start']}-{window['end']} in each recipient's local time")
    if info.waiting:
        table.add_row("waiting for window", f"{info.waiting} messages")
    finish = (data or {}).get("estimated_finish")
    if finish:
        table.add_row("estimated finish", f"{both_zones(finish['at'], finish.get('zone'))} "
                                          f"(at {finish['pace_per_s']:,.1f} messages/s)")
    if info.expires_at:
        table.add_row("expires", both_zones(info.expires_at, None))
    if info.delivery_rate is not None:
        table.add_row("delivered", f"{info.delivery['delivered']} ({info.delivery_rate:.1%} of reported"
                                   + (f", {info.delivery_rate_of_sent:.1%} of sent)" if info.delivery_rate_of_sent
                                      is not None else ")"))
        table.add_row("undelivered", str(info.delivery["undelivered"]))
    table.add_row("estimated cost", shown_money(info.cost, info.currency))
    actual = (data or {}).get("actual_cost")
    if actual is not None:
        table.add_row("actual cost", f"{shown_money(Decimal(actual), info.currency)} (accepted parts x price)")
    out.print(table)


def print_campaign_summary(data: dict[str, Any]) -> None:
    """The campaign report (:func:`dispatcher.sending.summary.campaign_summary`) as tables."""
    totals, rate, cost = data["totals"], data["delivery_rate"], data["cost"]
    head = Table(title=f"Campaign {data['id']} — {data['name']} ({data['state']})", show_header=False)
    head.add_row("account", Text(str(data.get("account") or "default")))
    head.add_row("sender", Text(str(data.get("sender") or "(account default)")))
    head.add_row("text", Text(str(data.get("text") or (f"from column {data['text_column']}"
                                                        if data.get("text_column") else ""))))
    head.add_row("messages", f"{totals['messages']:,} ({totals['sent']:,} sent, {totals['failed']:,} failed, "
                             f"{totals['rejected']:,} rejected, {totals['cancelled']:,} cancelled)")
    head.add_row("delivered", f"{totals['delivered']:,} of {totals['reported']:,} reported "
                              f"({_pct(rate['of_reported'])}), of {totals['sent']:,} sent ({_pct(rate['of_sent'])})")
    head.add_row("cost", f"{cost['actual']} {cost['currency']} actual (accepted parts x price), "
                         f"{cost['estimated']} {cost['currency']} estimated")
    out.print(head)
    if data["undelivered"]:
        table = Table(title="Undelivered by report code")
        for name in ("status", "code", "count", "reason"):
            table.add_column(name, justify="right" if name == "count" else "left")
        for row in data["undelivered"]:
            table.add_row(row["status"], row["code"] or "-", f"{row['count']:,}", row["reason"])
        out.print(table)
    table = Table(title="Countries")
    for name in ("country", "messages", "sent", "parts", "unit price", "estimated", "actual", "delivered",
                 "undelivered", "rate"):
        table.add_column(name, justify="left" if name == "country" else "right")
    for row in data["countries"]:
        table.add_row(row["country"], f"{row['messages']:,}", f"{row['sent']:,}", f"{row['parts']:,}",
                      row["unit_price"] or "-", row["estimated_cost"], row["actual_cost"], f"{row['delivered']:,}",
                      f"{row['undelivered']:,}", _pct(row["delivery_rate"]))
    out.print(table)
    timeline = Table(title="Timeline (UTC)")
    for name in ("at", "event", "by", "reason"):
        timeline.add_column(name)
    for event in data["timeline"]["events"]:
        timeline.add_row(str(event["at_iso"]), event["kind"], event["by"] or "", event["reason"] or "")
    out.print(timeline)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def both_zones(ts: float, zone: str | None) -> str:
    """``ts`` (Unix s) in ``zone`` (the recipients'), then in this machine's zone, each named:
    ``2026-12-07 09:00 Europe/Madrid (08:00 UTC here)``; only this machine's without ``zone``."""
    here = datetime.fromtimestamp(ts).astimezone()
    mine = f"{here:%Y-%m-%d %H:%M} {here.tzname()}"
    if not zone:
        return mine
    there = datetime.fromtimestamp(ts, ZoneInfo(zone))
    if there.utcoffset() == here.utcoffset() and zone == here.tzname():
        return f"{there:%Y-%m-%d %H:%M} {zone}"
    return f"{there:%Y-%m-%d %H:%M} {zone} ({here:%Y-%m-%d %H:%M} {here.tzname()} here)"


def campaign_table(infos: list[CampaignInfo]) -> Table:
    """The ``list`` table. The id, what a user copies from it, is never shortened: the name comes
    last and wraps, the date omits the year (a finished campaign's data lives ``campaign_ttl`` days)."""
    rows = []
    for i in infos:
        c = i.counts
        rows.append((i.id, i.state, str(i.total), str(c["sent"]), str(c["rejected"]), str(c["failed"]),
                     str(c["unknown"]), str(c["pending"]), time.strftime("%m-%d %H:%M", time.localtime(i.created_at)),
                     i.account, i.name))
    table = Table(box=None, padding=(0, 1, 0, 0), pad_edge=False, header_style="bold")
    headings = ("id", "state", "total", "sent", "rej", "failed", "unk", "pending", "created", "account")
    for j, heading in enumerate(headings):
        width = max([len(heading), *(len(r[j]) for r in rows)])
        table.add_column(heading, no_wrap=True, min_width=width, justify="right" if 2 <= j <= 7 else "left")
    table.add_column("name", overflow="fold")
    for row in rows:
        table.add_row(*row[:-1], Text(row[-1]))
    return table


def show_progress(store: CampaignStore, registry: WorkerRegistry, campaign_id: str,
                  poll_s: float = 0.5) -> CampaignInfo:
    """Show a live progress bar (rate, ETA, counts) until the campaign completes or stops.

    Raises:
        NoWorker: when no worker runs while the campaign has messages to send.
    """
    info = store.get(campaign_id)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               _RateColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[counts]}"))
    with Progress(*columns, console=out, transient=False) as progress:
        task = progress.add_task(info.name or campaign_id, total=info.total, counts="")

        def update(current: CampaignInfo) -> None:
            c = current.counts
            counts = (f"sent {c['sent']} rejected {c['rejected']} failed {c['failed']} unknown {c['unknown']}"
                      f" [{current.state}]")
            progress.update(task, completed=current.processed, counts=counts)

        return wait_for(store, registry, campaign_id, poll_s=poll_s, on_update=update)


def wait_for(store: CampaignStore, registry: WorkerRegistry, campaign_id: str, poll_s: float = 0.2,
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
        info = store.get(campaign_id)
        if on_update is not None:
            on_update(info)
        if info.state in STOP:
            return info
        now = time.monotonic()
        if now - started >= health.FIRST_HEARTBEAT_WAIT_S and now - checked >= worker_check_s:
            checked = now
            if health.needs_worker(info) and not registry.alive():
                raise health.NoWorker(f"{health.NO_WORKER}; campaign {campaign_id} is saved and starts when "
                                      "one does.")
        time.sleep(poll_s)


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
    if result.insight.get("preview"):
        out.print(_preview(result))
    unicode_note = _unicode_note(result)
    if unicode_note is not None:
        out.print(unicode_note)
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
    if result.empty_values:
        table.add_row("  of which an empty {placeholder}", f"{result.empty_values:,}")
    table.add_row("Duplicates (kept once)", f"{result.duplicates:,}")
    table.add_row("Suppressed", f"{result.suppressed:,}")
    table.add_row("HLR lookups", _lookups_line(result))
    table.add_row("Cost of messages", money(result.message_cost, currency))
    table.add_row("Cost of lookups", money(result.lookup_cost, currency))
    table.add_row("Total cost", Text(money(result.cost, currency), style="bold"))
    table.add_row("Balance", money(result.balance, currency))
    return table


def _preview(result: PreflightResult) -> Table:
    """The first messages as they will be sent."""
    table = Table(title="First messages, as they will be sent", title_justify="left")
    for name in ("Row", "To", "Text", "Parts", "Encoding"):
        table.add_column(name, justify="right" if name in ("Row", "Parts") else "left")
    for row in result.insight["preview"]:
        table.add_row(str(row["row"]), str(row["to"]), Text(str(row["text"])), str(row["parts"]), str(row["encoding"]))
    return table


def _unicode_note(result: PreflightResult) -> Text | None:
    """Which characters force Unicode, and the parts and cost that adds; the parts per message."""
    insight = result.insight
    if not insight:
        return None
    lines = []
    chars = insight.get("unicode_chars") or []
    if chars:
        listed = ", ".join(f"{c['char']} ({c['codepoint']}, {c['messages']:,} messages)" for c in chars[:8])
        lines.append(f"Characters forcing Unicode: {listed}.")
        lines.append(f"Unicode adds {insight['unicode_extra_parts']:,} parts, "
                     f"{money(insight['unicode_extra_cost'], result.currency)} (--gsm-only rejects those rows).")
    per = insight.get("parts_per_message") or {}
    if per:
        lines.append("Parts per message: " + ", ".join(f"{n} part{'s' if n != '1' else ''}: {count:,}"
                                                       for n, count in per.items()) + ".")
    return Text("\n".join(lines)) if lines else None


def _lookups_line(result: PreflightResult) -> Text:
    """What the HLR step did, or what it would have cost: lookups are paid for only when asked."""
    if result.hlr_done:
        return Text(f"{result.lookups:,} paid, {result.lookups_cached:,} from cache")
    if result.hlr_estimate is None:
        return Text("not done (--no-hlr)")
    return Text(f"not done: --hlr would check {result.hlr_estimate.sentence()}", style="yellow")


def _countries(result: PreflightResult) -> Table:
    table = Table(title="By country", title_justify="left")
    for name in ("Country", "Messages", "Parts", "Price per part", "Lookups", "Cost"):
        table.add_column(name, justify="left" if name == "Country" else "right")
    for country, summary in sorted(result.by_country.items(), key=lambda item: -item[1].cost):
        priced = summary.parts and not summary.lookups  # with lookups, the cost is no longer parts x price
        unit = unit_price(summary.cost / summary.parts, result.currency) if priced else "-"
        table.add_row(country, f"{summary.messages:,}", f"{summary.parts:,}", unit, f"{summary.lookups:,}",
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
    table = Table("name", "when", "window", "text", "next run", "last run", "outcome", "campaign / reason")
    for r in rows:
        when = f"{r['cron']} {r['tz']}" if r["cron"] else f"every {r['every_s']:g}s"
        window = f"{r['window']} {r.get('days') or ''}".strip() if r.get("window") else "-"
        text = r.get("text") or (f"column {r['text_column']}" if r.get("text_column") else "")
        next_run = "paused" if r.get("paused") else _when(r["next_run"], str(r["tz"]))
        table.add_row(str(r["name"]), when, window, Text(str(text)), next_run, _when(r["last_run"], str(r["tz"])),
                      str(r["last_outcome"] or "-"), str(r["last_campaign"] or r["last_reason"] or ""))
    out.print(table)


def _when(ts: float | None, tz: str) -> str:
    """``ts`` (Unix s) in the schedule's own zone, with the zone's abbreviation or offset."""
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S %Z") if ts else "-"

