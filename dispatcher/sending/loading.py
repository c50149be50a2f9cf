"""Campaigns that send while their list still loads: store a file chunk by chunk, release each
chunk's batches to the workers at once, and never call the campaign complete before the last row.

:func:`submit_file` runs the counting pass of :class:`~dispatcher.preflight.stream.StreamedPreflight`
(the budget guard refuses before anything is stored), creates the campaign with ``loading=1``,
then :func:`load` streams the file again: each chunk's batches, rejects and counters are written
by one Lua script (:data:`_COMMIT`), so a chunk is stored whole or not at all, and its batches are
queued right away. ``reserve_and_complete`` (``dispatcher.sending.batches``) never completes a
campaign whose ``loading`` flag is set; :func:`load` clears it after the last chunk.

The process that loads holds a lease (``Keys.loader``), refreshed by a thread. A ``submit`` that
dies mid-load leaves ``loading=1`` and no lease: :func:`progress` reports it as interrupted, and
:func:`load` run again (``dispatcher resume ID``) re-reads the file and stores only the rows after
``loaded_row``, the last spreadsheet row of the last chunk stored. Every commit is fenced by the
lease's token and by the batch count it expects, so two loaders can never store a row twice.
``pause`` and ``cancel`` during loading stop the loader at its next chunk (nothing more is stored).
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from dispatcher.errors import InputError
from dispatcher.instasent.client import MAX_BULK_ITEMS
from dispatcher.preflight import loader as file_loader
from dispatcher.preflight.check import PreflightClient
from dispatcher.preflight.hlr import Progress
from dispatcher.preflight.lookups import Confirm
from dispatcher.preflight.result import PreflightOptions, PreflightResult, check_budget, check_sendable
from dispatcher.preflight.stream import Priced, StreamedPreflight, empty_messages
from dispatcher.sending import payload
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.campaigns import Enqueuer
from dispatcher.sending.lifecycle import FINAL, State
from dispatcher.sending.store import CampaignStore
from dispatcher.sending.windows import Window, zones_for
from dispatcher.settings import Settings

#: Seconds a loader's lease lasts without a refresh (refreshed every third of it): how long after
#: a ``submit`` dies its campaign shows as interrupted. ``DISPATCHER_LOAD_LEASE`` overrides it.
LEASE_S = float(os.environ.get("DISPATCHER_LOAD_LEASE", "15"))
#: Rows per chunk when loading (memory per chunk is roughly 1 KB per row, all steps included).
LOAD_CHUNK_ROWS = 50_000

# KEYS[1] campaign, KEYS[2] loader lease, KEYS[3] rejects, KEYS[4..] per new batch: its hash, its payload.
# ARGV[1] lease token, ARGV[2] first batch number expected, ARGV[3] messages, ARGV[4] loaded row,
# ARGV[5] rows read, ARGV[6] Redis run id (the batches' ``inc``), ARGV[7] number of rejects R,
# ARGV[8..7+R] rejects (JSON),
# then per batch: size, blob, time zones ('' for none).
# -> {'ok'} | {'lost'} (another loader holds the lease) | {'moved'} (batches already stored)
#    | {'stopped', state} (paused, cancelled, failed...: store nothing)
_COMMIT = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {'lost'} end
local c = redis.call('HMGET', KEYS[1], 'state', 'batches')
if c[1] ~= 'queued' and c[1] ~= 'running' then return {'stopped', c[1] or ''} end
if tonumber(c[2]) ~= tonumber(ARGV[2]) then return {'moved'} end
local r = tonumber(ARGV[7])
for i = 8, 7 + r do redis.call('RPUSH', KEYS[3], ARGV[i]) end
local at = 8 + r
for k = 4, #KEYS, 2 do
  redis.call('DEL', KEYS[k])
  redis.call('HSET', KEYS[k], 'st', 'p', 'size', ARGV[at], 'att', 0, 'fails', 0, 'rc', '0', 'settled', '0',
             'inc', ARGV[6])
  redis.call('SET', KEYS[k + 1], ARGV[at + 1])
  if ARGV[at + 2] ~= '' then redis.call('HSET', KEYS[k], 'tz', ARGV[at + 2]) end
  at = at + 3
end
redis.call('HINCRBY', KEYS[1], 'batches', (#KEYS - 3) / 2)
redis.call('HINCRBY', KEYS[1], 'total', tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'loaded_row', ARGV[4], 'rows_read', ARGV[5])
return {'ok'}
"""

# KEYS[1] lease; ARGV[1] token, ARGV[2] ms. Refresh (or, with ms 0, release) the lease if ours. -> 1/0
_LEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) else redis.call('DEL', KEYS[1]) end
return 1
"""

# KEYS[1] campaign, KEYS[2] lease; ARGV[1] token, ARGV[2] rows read. Loading is over. -> 1/0
_FINISH = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'loading', '0', 'rows_read', ARGV[2])
redis.call('DEL', KEYS[2])
return 1
"""


@dataclass(frozen=True, slots=True)
class LoadProgress:
    """Where the loading of a campaign's list stands (``dispatcher status``).

    ``rows_read`` are data rows of the file read, ``stored`` messages stored (sendable),
    ``expected`` the messages the counting pass found; ``interrupted`` means nobody is loading
    (the ``submit`` died, or loading stopped at a pause): ``dispatcher resume ID`` continues it.
    """

    loading: bool
    rows_read: int
    stored: int
    expected: int
    loaded_row: int
    interrupted: bool

    def to_json(self) -> dict[str, Any]:
        """The ``loading`` object of ``status --json``."""
        return {"loading": self.loading, "rows_read": self.rows_read, "stored": self.stored,
                "expected": self.expected, "loaded_row": self.loaded_row, "interrupted": self.interrupted}

    def describe(self) -> str:
        """One line for the status table."""
        done = f"{self.stored:,} of {self.expected:,} messages stored, {self.rows_read:,} rows read"
        if self.interrupted:
            return f"interrupted at row {self.loaded_row:,} ({done}); `dispatcher resume ID` continues it"
        return f"loading ({done})"


def progress(store: CampaignStore, cid: str) -> LoadProgress | None:
    """The loading progress of campaign ``cid``; None when its list is complete or it is final."""
    fields = store.redis.hmget(store.keys.campaign(cid), "loading", "rows_read", "total", "expected", "loaded_row",
                               "state")
    loading, rows_read, total, expected, loaded_row, state = (v.decode() if v else "" for v in fields)
    if loading != "1" or state in {s.value for s in FINAL}:
        return None
    alive = bool(store.redis.exists(store.keys.loader(cid)))
    return LoadProgress(loading=True, rows_read=int(rows_read or 0), stored=int(total or 0),
                        expected=int(expected or 0), loaded_row=int(loaded_row or 0), interrupted=not alive)


@dataclass(frozen=True, slots=True)
class Loaded:
    """How a :func:`load` ended: ``complete`` (every row stored) or stopped because the campaign
    is ``state`` (paused, cancelled...) or another loader took over (``lost``)."""

    outcome: str
    state: str = ""
    stored: int = 0


class _Lease:
    """The loader lease of one campaign, refreshed by a daemon thread while held."""

    def __init__(self, store: CampaignStore, cid: str) -> None:
        self.store, self.key, self.token = store, store.keys.loader(cid), secrets.token_hex(8)
        self._script = store.redis.register_script(_LEASE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        if not self.store.redis.set(self.key, self.token, nx=True, px=int(LEASE_S * 1000)):
            return False
        self._thread = threading.Thread(target=self._refresh, name="loader-lease", daemon=True)
        self._thread.start()
        return True

    def _refresh(self) -> None:
        while not self._stop.wait(LEASE_S / 3):
            if not self._script(keys=[self.key], args=[self.token, int(LEASE_S * 1000)]):
                return

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._script(keys=[self.key], args=[self.token, 0])


def submit_file(store: CampaignStore, ops: BatchOps, enqueuer: Enqueuer, settings: Settings, *,
                path: str | Path, options: PreflightOptions, client: PreflightClient, name: str,
                send_window: Window | None = None, expire_after_s: float | None = None,
                progress_cb: Progress | None = None, on_counted: Callable[[PreflightResult], None] | None = None,
                on_created: Callable[[str], None] | None = None, confirm: Confirm | None = None,
                chunk_rows: int = LOAD_CHUNK_ROWS) -> tuple[str, PreflightResult, Loaded]:
    """Count, guard, create and load a campaign from the file at ``path``.

    ``on_counted(result)`` sees the counted preflight before the guard judges it (to show it);
    ``on_created(campaign_id)`` runs once the campaign exists, before loading. Returns
    ``(campaign id, the counted preflight, how loading ended)``.

    Raises:
        InputError: a file or option the user must fix, or a list with no message to send (nothing
            is stored).
        BudgetExceeded: when the cost exceeds the balance or ``max_cost`` (nothing is stored).
    """
    preflight = StreamedPreflight(path, options, settings=settings, redis=store.redis, client=client,
                                  progress=progress_cb, chunk_rows=chunk_rows, confirm=confirm)
    result = preflight.count(workers=2)
    if on_counted is not None:
        on_counted(result)
    check_sendable(result)
    check_budget(result, preflight.options.max_cost)
    expires_at = time.time() + expire_after_s if expire_after_s else None
    recorded = {"file": result.file, "text": options.text, "text_column": options.text_column,
                "sender": options.sender, "country": options.country, "hlr": options.hlr}
    # Read before the storing pass checks the list: a number suppressed later changes it, and then
    # every batch checks the list again before it is sent.
    suppression_version = preflight.suppression.version()
    cid = store.create(name, empty_messages(), window=settings.effective_queue_window, cost=result.cost,
                       currency=result.currency, options=recorded,
                       preflight={k: v for k, v in result.to_json().items() if k not in ("rejects", "by_country")},
                       send_window=send_window, expires_at=expires_at, loading=True,
                       suppression_version=suppression_version)
    saved = _load_options(preflight.options, path, chunk_rows, preflight.hlr_done)
    store.redis.hset(store.keys.campaign(cid), mapping={"expected": result.valid, "load": orjson.dumps(saved)})
    if on_created is not None:
        on_created(cid)
    return cid, result, load(store, ops, enqueuer, cid, client=client, settings=settings, preflight=preflight)


def load(store: CampaignStore, ops: BatchOps, enqueuer: Enqueuer, cid: str, *, client: PreflightClient,
         settings: Settings, preflight: StreamedPreflight | None = None) -> Loaded:
    """Store the campaign's list after ``loaded_row``, chunk by chunk, queueing each chunk's batches.

    Raises:
        InputError: when another process is loading it, or the file is gone or changed.
    """
    saved = orjson.loads(store.redis.hget(store.keys.campaign(cid), "load") or b"{}")
    if preflight is None:
        if not saved:
            raise InputError(f"campaign {cid} has no list to load.")
        preflight = StreamedPreflight(saved["path"], PreflightOptions(**saved["options"]), settings=settings,
                                      redis=store.redis, client=client, chunk_rows=int(saved["chunk_rows"]))
        preflight.hlr_done = bool(saved.get("hlr_done"))  # as the counting pass decided (answers cached)
    lease = _Lease(store, cid)
    if not lease.acquire():
        raise InputError(f"campaign {cid} is being loaded by another process; `dispatcher status {cid}` shows it.")
    try:
        return _load(store, ops, enqueuer, cid, preflight, lease)
    finally:
        lease.release()


def _load(store: CampaignStore, ops: BatchOps, enqueuer: Enqueuer, cid: str, preflight: StreamedPreflight,
          lease: _Lease) -> Loaded:
    commit = store.redis.register_script(_COMMIT)
    finish = store.redis.register_script(_FINISH)
    info = store.redis.hmget(store.keys.campaign(cid), "loaded_row", "send_window", "preflight")
    after, windowed = int(info[0] or 0), bool(info[1])
    approved = float(orjson.loads(info[2] or b"{}").get("message_cost", 0.0))
    rows_read, cost = 0, 0.0
    while True:
        try:
            for chunk in preflight.chunks():
                rows_read += chunk.rows
                cost += float(pc.sum(chunk.messages.column("price")).as_py() or 0.0)
                if cost > approved * (1 + 1e-9) + 1e-6:  # the file grew since the budget guard passed
                    store.transition(cid, State.PAUSED, "the list changed after it was checked")
                    return Loaded("stopped", state=State.PAUSED.value)
                stop = _commit_chunk(store, commit, cid, lease.token, _after(chunk, after), rows_read, windowed)
                if stop is not None:
                    return stop
                enqueuer.enqueue(cid, ops.reserve(cid))
            break
        except file_loader.RaggedRows:  # rows already stored are skipped by row on the way again
            preflight.tolerant, rows_read, cost = True, 0, 0.0
            after = int(store.redis.hget(store.keys.campaign(cid), "loaded_row") or 0)
    if not finish(keys=[store.keys.campaign(cid), lease.key], args=[lease.token, rows_read]):
        return Loaded("lost")
    enqueuer.enqueue(cid, ops.reserve(cid))  # completes the campaign if every batch has settled
    return Loaded("complete", stored=int(store.redis.hget(store.keys.campaign(cid), "total") or 0))


def _after(chunk: Priced, row: int) -> Priced:
    """The part of ``chunk`` after spreadsheet row ``row`` (all of it when ``row`` is 0)."""
    if row <= 0 or chunk.last_row <= row:
        return chunk if row <= 0 else replace(chunk, messages=chunk.messages.slice(0, 0), rejects=[])
    keep = pc.greater(chunk.messages.column("row"), row)
    return replace(chunk, messages=chunk.messages.filter(keep), rejects=[r for r in chunk.rejects if r.row > row])


def _commit_chunk(store: CampaignStore, commit: Any, cid: str, token: str, chunk: Priced, rows_read: int,
                  windowed: bool) -> Loaded | None:
    """Store one chunk with one script; None when stored (or empty), else why loading stops."""
    messages = chunk.messages
    last_row = chunk.last_row
    if messages.num_rows == 0 and not chunk.rejects:
        return None
    zones = None
    if windowed and messages.num_rows:
        keys = [",".join(zones_for(to)) for to in messages.column("to").to_pylist()]
        order = np.argsort(np.asarray(keys, dtype=object), kind="stable")  # file order within a zone
        messages = messages.take(pa.array(order))
        zones = [keys[i] for i in order]
    first = int(store.redis.hget(store.keys.campaign(cid), "batches") or 0)
    blobs = _blobs(messages, zones)
    keys = [store.keys.campaign(cid), store.keys.loader(cid), store.keys.rejects(cid),
            *(key for n in range(first, first + len(blobs)) for key in (store.keys.batch(cid, n),
                                                                         store.keys.payload(cid, n)))]
    # The Redis process that holds the batches (as CampaignStore writes it): a claim under another
    # one reconciles first.
    run_id = store.redis.info("server")["run_id"]
    args: list[Any] = [token, first, messages.num_rows, last_row, rows_read, run_id, len(chunk.rejects),
                       *(orjson.dumps(r.to_json()) for r in chunk.rejects)]
    for size, blob, zone in blobs:
        args += [size, blob, zone]
    answer = commit(keys=keys, args=args)
    outcome = answer[0].decode()
    if outcome == "ok":
        return None
    if outcome == "stopped":
        return Loaded("stopped", state=answer[1].decode())
    return Loaded(outcome)


def _blobs(messages: pa.Table, zones: list[str] | None) -> list[tuple[int, bytes, str]]:
    """``(size, compressed messages, time zones)`` of each batch of a chunk's messages."""
    columns = {"rows": messages.column("row").to_pylist(), "to": messages.column("to").to_pylist(),
               "text": messages.column("text").to_pylist(), "sender": messages.column("sender").to_pylist(),
               "parts": messages.column("parts").to_pylist(), "unicode": messages.column("unicode").to_pylist(),
               "price": messages.column("price").to_pylist(), "country": messages.column("country").to_pylist()}
    out = []
    lo, total = 0, messages.num_rows
    while lo < total:
        hi = min(total, lo + MAX_BULK_ITEMS)
        if zones is not None:
            hi = next((i for i in range(lo + 1, hi) if zones[i] != zones[lo]), hi)
        out.append((hi - lo, payload.encode({k: v[lo:hi] for k, v in columns.items()}),
                    zones[lo] if zones is not None else ""))
        lo = hi
    return out


def _load_options(options: PreflightOptions, path: str | Path, chunk_rows: int, hlr_done: bool) -> dict[str, Any]:
    """What :func:`load` needs to read the file again after an interruption."""
    return {"path": str(Path(path).resolve()), "chunk_rows": chunk_rows, "hlr_done": hlr_done,
            "options": {"text": options.text, "text_column": options.text_column, "sender": options.sender,
                        "country": options.country, "phone_column": options.phone_column, "hlr": options.hlr,
                        "gsm_only": options.gsm_only, "max_cost": options.max_cost}}


