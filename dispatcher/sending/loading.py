"""Campaigns that send while their list still loads: store a file chunk by chunk, release each
chunk's batches to the workers at once, and never call the campaign complete before the last row.

:func:`create_and_load` (what :func:`dispatcher.sending.submission.submit` runs) first bounds the
cost (:meth:`~dispatcher.preflight.stream.StreamedPreflight.bound`,
a fast read that keeps no rows). Without HLR (or with HLR on auto when nobody can be asked and the
first chunk has a number the HLR cache lacks: then no lookup is made, and the chunks only probe the
cache to price them in the summary), when even that bound fits the balance and ``max_cost``, the
file is checked and stored in **one pass**: the campaign is created (with
``loading=1``) once the first chunk with a message is checked, every chunk is stored as soon as it
is checked, and the exact preflight summary, ``expected`` and cost are written when the last
chunk is; a list with nothing to send is refused and no campaign is created. Otherwise (the bound
is over, or HLR is on) the **counting pass** of
:class:`~dispatcher.preflight.stream.StreamedPreflight` runs first (the budget guard refuses
before anything is stored), then the storing pass. Either way each chunk's batches, rejects and
counters are written by one Lua script (:mod:`dispatcher.sending.chunkstore`), so a chunk is
stored whole or not at all, and its batches are queued right away. ``reserve_and_complete``
(``dispatcher.sending.batches``) never completes a campaign whose ``loading`` flag is set; the
last step of loading clears it.

The process that loads holds a lease (``Keys.loader``, ``Settings.load_lease_s``), refreshed by a
thread. A ``submit`` that dies mid-load leaves ``loading=1`` and no lease: :func:`progress`
reports it as interrupted, and :func:`load` run again (``dispatcher resume ID``) re-reads the
file, stores only the rows after ``loaded_row`` (the last spreadsheet row of the last chunk
stored) and, for a one-pass campaign, writes the exact totals of the whole file at the end.
Every commit is fenced by the lease's token and by the batch count it expects, so two loaders can
never store a row twice. ``pause`` and ``cancel`` during loading stop the loader at its next chunk.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import pyarrow.compute as pc

from dispatcher.errors import InputError
from dispatcher.preflight import loader as file_loader
from dispatcher.preflight.bound import CostBound
from dispatcher.preflight.check import PreflightClient
from dispatcher.preflight.hlr import Progress
from dispatcher.preflight.lookups import Confirm
from dispatcher.preflight.result import ANSWER_ONLY, PreflightOptions, PreflightResult, check_budget, check_sendable
from dispatcher.preflight.spill import RejectSpill
from dispatcher.preflight.stream import STREAM_WORKERS, Priced, StreamedPreflight, Totals, empty_messages
from dispatcher.schema.names import FINAL, State
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.chunkstore import ChunkWriter, Lease, Loaded, after
from dispatcher.sending.enqueuer import Enqueuer
from dispatcher.sending.store import CampaignStore
from dispatcher.sending.windows import Window
from dispatcher.settings import Settings

#: Rows per chunk when loading (memory per chunk is roughly 1 KB per row, all steps included).
LOAD_CHUNK_ROWS = 50_000
#: Chunks judged at once by the one pass (threads; ~100 MB more than one, well inside the budget).
ONE_PASS_WORKERS = 2
#: Rows of the one pass's first chunk: small, so that the first bulk leaves soon.
FIRST_CHUNK_ROWS = 5_000


@dataclass(frozen=True, slots=True)
class LoadProgress:
    """Where the loading of a campaign's list stands (``dispatcher status``).

    ``rows_read`` are data rows of the file read, ``stored`` messages stored (sendable),
    ``expected`` the messages the counting pass found (None until a one-pass load ends: then
    ``file_rows``, the rows the bound pass read, says how far it is); ``interrupted`` means nobody
    is loading (the ``submit`` died, or loading stopped at a pause): ``dispatcher resume ID`` continues it.
    """

    loading: bool
    rows_read: int
    stored: int
    expected: int | None
    loaded_row: int
    interrupted: bool
    file_rows: int = 0

    def to_json(self) -> dict[str, Any]:
        """The ``loading`` object of ``status --json``."""
        return {"loading": self.loading, "rows_read": self.rows_read, "stored": self.stored,
                "expected": self.expected, "file_rows": self.file_rows or None, "loaded_row": self.loaded_row,
                "interrupted": self.interrupted}

    def describe(self) -> str:
        """One line for the status table."""
        if self.expected is None:
            done = f"{self.stored:,} messages stored, {self.rows_read:,} of {self.file_rows:,} rows read"
        else:
            done = f"{self.stored:,} of {self.expected:,} messages stored, {self.rows_read:,} rows read"
        if self.interrupted:
            return f"interrupted at row {self.loaded_row:,} ({done}); `dispatcher resume ID` continues it"
        return f"loading ({done})"


def progress(store: CampaignStore, campaign_id: str) -> LoadProgress | None:
    """The loading progress of campaign ``campaign_id``; None when its list is complete or it is final."""
    fields = store.redis.hmget(store.keys.campaign(campaign_id), "loading", "rows_read", "total", "expected",
                               "loaded_row", "state", "file_rows")
    loading, rows_read, total, expected, loaded_row, state, file_rows = (v.decode() if v else "" for v in fields)
    if loading != "1" or state in {s.value for s in FINAL}:
        return None
    alive = bool(store.redis.exists(store.keys.loader(campaign_id)))
    return LoadProgress(loading=True, rows_read=int(rows_read or 0), stored=int(total or 0),
                        expected=int(expected) if expected else None, loaded_row=int(loaded_row or 0),
                        interrupted=not alive, file_rows=int(file_rows or 0))


def bound_fits(bound: CostBound, balance: float, max_cost: float | None) -> bool:
    """Whether a cost bound is within the balance and ``max_cost`` (the guard's tolerance)."""
    return bound.cost <= balance + 1e-9 and (max_cost is None or bound.cost <= max_cost + 1e-9)


@dataclass(frozen=True, slots=True)
class _Campaign:
    """What :func:`create_and_load` creates the campaign with."""

    name: str
    path: str | Path
    chunk_rows: int
    send_window: Window | None
    expires_at: float | None
    suppression_version: int
    #: The account it sends for and that account's organization ("" when unknown).
    account: str
    organization: str
    priority: str = "normal"

    def create(self, store: CampaignStore, settings: Settings, preflight: StreamedPreflight, *, cost: float,
               summary: dict[str, Any], fields: dict[str, Any], one_pass: bool, approved: float) -> str:
        """Store the (empty, loading) campaign; returns its id."""
        options = preflight.options
        recorded = {"file": str(preflight.fmt.path), "text": options.text, "text_column": options.text_column,
                    "sender": options.sender, "country": options.country, "hlr": options.hlr}
        # The default account's organization is never stored: take the one the balance answer just
        # named, so its campaigns share a lane with the named accounts of the same organization
        # (two lanes for one organization would together exceed its limit).
        organization = self.organization or preflight.pricing.account.organization or ""
        campaign_id = store.create(self.name, empty_messages(), window=settings.effective_queue_window, cost=cost,
                           currency=preflight.pricing.currency, options=recorded, preflight=summary,
                           send_window=self.send_window, expires_at=self.expires_at, loading=True,
                           suppression_version=self.suppression_version, account=self.account,
                           organization=organization, priority=self.priority)
        saved = _load_options(options, self.path, self.chunk_rows, preflight, one_pass, approved)
        store.redis.hset(store.keys.campaign(campaign_id), mapping={**fields, "load": orjson.dumps(saved)})
        return campaign_id


def create_and_load(store: CampaignStore, ops: BatchOps, enqueuer: Enqueuer, settings: Settings, *,
                path: str | Path, options: PreflightOptions, client: PreflightClient, name: str,
                send_window: Window | None = None, expire_after_s: float | None = None,
                progress_cb: Progress | None = None, on_counted: Callable[[PreflightResult], None] | None = None,
                on_created: Callable[[str], None] | None = None, confirm: Confirm | None = None,
                chunk_rows: int = LOAD_CHUNK_ROWS,
                on_bound: Callable[[CostBound, float, str], None] | None = None,
                one_pass: bool = True, organization: str = "",
                priority: str = "normal") -> tuple[str, PreflightResult, Loaded]:
    """Bound or count, guard, create and load a campaign from the file at ``path`` (see the module
    docstring for the two orders).

    ``on_counted(result)`` sees the exact preflight: before the guard judges it (counting pass
    first), or once the list is loaded (one pass; not when loading stopped early, when the
    returned preflight covers only the rows read). ``on_bound(bound, balance, currency)`` runs when
    the one pass is chosen, before anything is stored. ``on_created(campaign_id)`` runs once the
    campaign exists. ``one_pass=False`` always counts first. The campaign sends for
    ``options.account`` (whose client ``client`` is), of organization ``organization`` ("" when
    unknown); ``priority`` weighs it in its lane (see :mod:`dispatcher.sending.fairshare`). Returns
    ``(campaign id, the exact preflight, how loading ended)``.

    Raises:
        InputError: a file or option the user must fix, or a list with no message to send (no
            campaign is created).
        BudgetExceeded: when the cost exceeds the balance or ``max_cost`` (nothing is stored).
    """
    preflight = StreamedPreflight(path, options, settings=settings, redis=store.redis, client=client,
                                  progress=progress_cb, chunk_rows=chunk_rows, confirm=confirm)
    campaign = _Campaign(name, path, chunk_rows, send_window, time.time() + expire_after_s if expire_after_s else None,
                         # Read before the storing pass checks the list: a number suppressed later
                         # changes it, and then every batch checks the list again before it is sent.
                         preflight.suppression.version(), preflight.options.account, organization, priority)
    max_cost = preflight.options.max_cost
    # HLR on auto (hlr None) looks up only when free or confirmed: with nobody to ask and a first
    # chunk that already needs a paid lookup, it surely looks nothing up, as with hlr False.
    if one_pass and (preflight.options.hlr is False or preflight.lookups_declined(min(FIRST_CHUNK_ROWS, chunk_rows))):
        bound = preflight.bound()
        if bound_fits(bound, preflight.pricing.account.available, max_cost):
            if on_bound is not None:
                on_bound(bound, preflight.pricing.account.available, preflight.pricing.currency)
            return _one_pass(store, ops, enqueuer, settings, preflight, campaign, bound,
                             on_counted=on_counted, on_created=on_created)
    result = preflight.count(workers=2)
    if on_counted is not None:
        on_counted(result)
    check_sendable(result)
    check_budget(result, max_cost)
    summary = {k: v for k, v in result.to_json(max_rejects=0).items() if k not in ANSWER_ONLY}
    campaign_id = campaign.create(store, settings, preflight, cost=result.cost, summary=summary,
                          fields={"expected": result.valid}, one_pass=False, approved=result.message_cost)
    if on_created is not None:
        on_created(campaign_id)
    storing = _Storing(store, ops, enqueuer, settings, preflight)
    storing.attach(campaign_id)
    return campaign_id, result, storing.run()


def _one_pass(store: CampaignStore, ops: BatchOps, enqueuer: Enqueuer, settings: Settings,
              preflight: StreamedPreflight, campaign: _Campaign, bound: CostBound, *,
              on_counted: Callable[[PreflightResult], None] | None,
              on_created: Callable[[str], None] | None) -> tuple[str, PreflightResult, Loaded]:
    """Check and store in one pass, creating the campaign at the first chunk with a message."""
    preflight.probing = preflight.options.hlr is None  # auto declined: price the lookups for the summary

    def create() -> str:
        campaign_id = campaign.create(store, settings, preflight, cost=bound.cost,
                              summary={"file": str(preflight.fmt.path), "cost_bound": bound.cost},
                              fields={"file_rows": bound.rows}, one_pass=True, approved=bound.cost)
        if on_created is not None:
            on_created(campaign_id)
        return campaign_id

    storing = _Storing(store, ops, enqueuer, settings, preflight, workers=ONE_PASS_WORKERS, create=create,
                       keep_rejects=True, first_rows=min(FIRST_CHUNK_ROWS, campaign.chunk_rows))
    loaded = storing.run()
    # The whole file's preflight when loading completed (or found nothing to send); the rows read
    # so far when it stopped early (paused, cancelled), which is not shown as the list's summary.
    result = preflight.result(storing.totals, storing.rejects)
    if on_counted is not None and (loaded.outcome == "complete" or storing.campaign_id is None):
        on_counted(result)
    if storing.campaign_id is None:
        check_sendable(result)  # nothing had a message: refused, and no campaign exists
        raise InputError(f"no row of {preflight.fmt.path.name} can be sent.")  # not reached: it raised
    return storing.campaign_id, result, loaded


def load(store: CampaignStore, ops: BatchOps, enqueuer: Enqueuer, campaign_id: str, *, client: PreflightClient,
         settings: Settings) -> Loaded:
    """Store the campaign's list after ``loaded_row``, chunk by chunk, queueing each chunk's batches.

    Raises:
        InputError: when another process is loading it, or the file is gone or changed.
    """
    saved = orjson.loads(store.redis.hget(store.keys.campaign(campaign_id), "load") or b"{}")
    if not saved:
        raise InputError(f"campaign {campaign_id} has no list to load.")
    preflight = StreamedPreflight(saved["path"], PreflightOptions(**saved["options"]), settings=settings,
                                  redis=store.redis, client=client, chunk_rows=int(saved["chunk_rows"]))
    preflight.hlr_done = bool(saved.get("hlr_done"))  # as the counting pass decided (answers cached)
    preflight.probing = saved.get("hlr_mode") == "probe"  # a one pass on auto: the same exact summary at the end
    storing = _Storing(store, ops, enqueuer, settings, preflight)
    storing.attach(campaign_id)
    return storing.run()


class _Storing:
    """One storing pass over the file: every chunk is checked and counted; those after
    ``loaded_row`` are stored. With ``create``, the campaign is created at the first chunk with a
    message (the rejects before it wait in a :class:`RejectSpill`)."""

    def __init__(self, store: CampaignStore, ops: BatchOps, enqueuer: Enqueuer, settings: Settings,
                 preflight: StreamedPreflight, *, workers: int = STREAM_WORKERS,
                 create: Callable[[], str] | None = None, keep_rejects: bool = False,
                 first_rows: int | None = None) -> None:
        self.store, self.ops, self.enqueuer, self.settings = store, ops, enqueuer, settings
        self.preflight, self.workers, self.create, self.keep_rejects = preflight, workers, create, keep_rejects
        self.first_rows = first_rows
        self.campaign_id: str | None = None
        self.lease: Lease | None = None
        self.writer: ChunkWriter | None = None
        self.after, self.approved, self.exact_at_end = 0, math.inf, False
        self.pool: ThreadPoolExecutor | None = None
        self.writing: Future[Loaded | None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.totals, self.rows_read, self.cost = Totals(), 0, 0.0
        self.rejects = RejectSpill() if self.keep_rejects else None
        self.pending = RejectSpill()

    def attach(self, campaign_id: str) -> None:
        """Take the campaign's loader lease and read where its loading stands.

        Raises:
            InputError: when another process is loading it.
        """
        lease = Lease(self.store, campaign_id, self.settings.load_lease_s)
        if not lease.acquire():
            raise InputError(f"campaign {campaign_id} is being loaded by another process; "
                             f"`dispatcher status {campaign_id}` shows it.")
        self.campaign_id, self.lease = campaign_id, lease
        info = self.store.redis.hmget(self.store.keys.campaign(campaign_id), "loaded_row", "send_window", "preflight",
                                      "load")
        saved = orjson.loads(info[3] or b"{}")
        self.after = int(info[0] or 0)
        approved = saved.get("approved")
        self.approved = float(approved if approved is not None else
                              orjson.loads(info[2] or b"{}").get("message_cost", 0.0))
        self.exact_at_end = bool(saved.get("one_pass"))
        self.writer = ChunkWriter(self.store, campaign_id, lease, windowed=bool(info[1]))

    def run(self) -> Loaded:
        """Read the file to its end (again with the tolerant reader after a ragged row).

        A chunk is written (compressed, committed, queued) on a thread while the next one is
        checked; writes stay in file order, one at a time, and a write that stops the loading
        (paused, cancelled, lease lost) stops it before the next is started.
        """
        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-writer") as self.pool:
                while True:
                    try:
                        for chunk in self.preflight.chunks(workers=self.workers, first_rows=self.first_rows):
                            stop = self._chunk(chunk)
                            if stop is not None:
                                return stop
                        break
                    except file_loader.RaggedRows:  # rows already stored are skipped by row on the way again
                        if (stop := self._settle()) is not None:
                            return stop
                        self.preflight.tolerant = True
                        self._reset()
                        if self.campaign_id is not None:
                            self.after = int(self.store.redis.hget(self.store.keys.campaign(self.campaign_id),
                                                                   "loaded_row") or 0)
                if (stop := self._settle()) is not None:
                    return stop
                return self._finish()
        finally:  # the pool's exit waited for the last write
            if self.lease is not None:
                self.lease.release()

    def _chunk(self, chunk: Priced) -> Loaded | None:
        self.totals.add(chunk)
        self.rows_read += chunk.rows
        self.cost += float(pc.sum(chunk.messages.column("price")).as_py() or 0.0)
        if self.rejects is not None:
            self.rejects.extend(chunk.rejects)
        if self.campaign_id is None:
            if self.create is None or not chunk.messages.num_rows:
                self.pending.extend(chunk.rejects)
                return None
            self.attach(self.create())
            chunk = replace(chunk, rejects=[*self.pending, *chunk.rejects])
            self.pending = RejectSpill()
        assert self.campaign_id is not None and self.writer is not None and self.pool is not None
        if (stop := self._settle()) is not None:
            return stop
        if self.cost > self.approved * (1 + 1e-9) + 1e-6:  # the file grew since the budget guard passed
            self.store.transition(self.campaign_id, State.PAUSED, "the list changed after it was checked")
            return Loaded("stopped", state=State.PAUSED.value)
        self.writing = self.pool.submit(self._write, self.campaign_id, self.writer, after(chunk, self.after),
                                        self.rows_read)
        return None

    def _write(self, campaign_id: str, writer: ChunkWriter, chunk: Priced, rows_read: int) -> Loaded | None:
        """Store one chunk and queue its batches (on the writer thread)."""
        stop = writer.commit(chunk, rows_read)
        if stop is None:
            self.enqueuer.enqueue(campaign_id, self.ops.reserve(campaign_id))
        return stop

    def _settle(self) -> Loaded | None:
        """Wait for the chunk being written: why loading stops, or None (its error is raised here)."""
        writing, self.writing = self.writing, None
        return writing.result() if writing is not None else None

    def _finish(self) -> Loaded:
        if self.campaign_id is None or self.writer is None:
            return Loaded("empty")  # nothing to send: the caller refuses the list
        summary, expected, cost = None, 0, 0.0
        if self.exact_at_end:
            result = self.preflight.result(self.totals)
            summary = {k: v for k, v in result.to_json(max_rejects=0).items() if k not in ANSWER_ONLY}
            expected, cost = result.valid, result.cost
        if not self.writer.finish(self.rows_read, summary, expected, cost):
            return Loaded("lost")
        # Enqueuing completes the campaign if every batch settled.
        self.enqueuer.enqueue(self.campaign_id, self.ops.reserve(self.campaign_id))
        stored = self.store.redis.hget(self.store.keys.campaign(self.campaign_id), "total")
        return Loaded("complete", stored=int(stored or 0))


def _load_options(options: PreflightOptions, path: str | Path, chunk_rows: int, preflight: StreamedPreflight,
                  one_pass: bool, approved: float) -> dict[str, Any]:
    """What :func:`load` needs to read the file again after an interruption; ``approved`` is the
    message cost the guard passed (the bound, in one pass): more stops the loading."""
    return {"path": str(Path(path).resolve()), "chunk_rows": chunk_rows, "hlr_done": preflight.hlr_done,
            "hlr_mode": preflight.hlr_mode,
            "one_pass": one_pass, "approved": approved,
            "options": {"text": options.text, "text_column": options.text_column, "sender": options.sender,
                        "country": options.country, "phone_column": options.phone_column, "hlr": options.hlr,
                        "gsm_only": options.gsm_only, "max_cost": options.max_cost, "account": options.account}}
