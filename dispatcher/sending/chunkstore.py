"""How :mod:`dispatcher.sending.loading` writes a list chunk by chunk: the loader's lease and the
Lua scripts (``lua/commit_chunk.lua``, ``lua/finish_loading.lua``) that store one chunk whole
(batches, rejects, counters) or end the loading, each fenced by the lease's token so two loaders
can never store a row twice.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from dispatcher.preflight.stream import Priced
from dispatcher.schema.scripts import era, script
from dispatcher.sending import payload
from dispatcher.sending.store import CampaignStore, batch_bounds
from dispatcher.sending.windows import zones_for


@dataclass(frozen=True, slots=True)
class Loaded:
    """How a load ended: ``complete`` (every row stored) or stopped because the campaign
    is ``state`` (paused, cancelled...) or another loader took over (``lost``)."""

    outcome: str
    state: str = ""
    stored: int = 0


class Lease:
    """The loader lease of one campaign (``lease_s`` seconds), refreshed by a daemon thread while held."""

    def __init__(self, store: CampaignStore, campaign_id: str, lease_s: float) -> None:
        self.store, self.key, self.token = store, store.keys.loader(campaign_id), secrets.token_hex(8)
        self.lease_s = lease_s
        self._script = store.redis.register_script(script("loader_lease"))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        """Take the lease; False when another loader holds it."""
        if not self.store.redis.set(self.key, self.token, nx=True, px=int(self.lease_s * 1000)):
            return False
        self._thread = threading.Thread(target=self._refresh, name="loader-lease", daemon=True)
        self._thread.start()
        return True

    def _refresh(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            if not self._script(keys=[self.key], args=[self.token, int(self.lease_s * 1000)]):
                return

    def release(self) -> None:
        """Stop refreshing and give the lease up (if still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._script(keys=[self.key], args=[self.token, 0])


class ChunkWriter:
    """The scripts of one campaign's loading, under ``lease``."""

    def __init__(self, store: CampaignStore, campaign_id: str, lease: Lease, *, windowed: bool) -> None:
        self.store, self.campaign_id, self.lease, self.windowed = store, campaign_id, lease, windowed
        self._commit = store.redis.register_script(script("batch", "commit_chunk"))
        self._finish = store.redis.register_script(script("finish_loading"))

    def commit(self, chunk: Priced, rows_read: int) -> Loaded | None:
        """Store one chunk with one script; None when stored (or empty), else why loading stops."""
        store, campaign_id = self.store, self.campaign_id
        messages = chunk.messages
        last_row = chunk.last_row
        if messages.num_rows == 0 and not chunk.rejects:
            return None
        zones = None
        if self.windowed and messages.num_rows:
            keys = [",".join(zones_for(to)) for to in messages.column("to").to_pylist()]
            order = np.argsort(np.asarray(keys, dtype=object), kind="stable")  # file order within a zone
            messages = messages.take(pa.array(order))
            zones = [keys[i] for i in order]
        first = int(store.redis.hget(store.keys.campaign(campaign_id), "batches") or 0)
        blobs = _blobs(messages, zones)
        keys = [store.keys.campaign(campaign_id), store.keys.loader(campaign_id), store.keys.rejects(campaign_id),
                *(key for n in range(first, first + len(blobs)) for key in (store.keys.batch(campaign_id, n),
                                                                         store.keys.payload(campaign_id, n)))]
        # The Redis process that holds the batches (as CampaignStore writes it): a claim under another
        # one reconciles first.
        run_id = era(store.redis)
        args: list[Any] = [self.lease.token, first, messages.num_rows, last_row, rows_read, run_id,
                           len(chunk.rejects), *(orjson.dumps(r.to_json()) for r in chunk.rejects)]
        for size, blob, zone in blobs:
            args += [size, blob, zone]
        answer = self._commit(keys=keys, args=args)
        outcome = answer[0].decode()
        if outcome == "ok":
            return None
        if outcome == "stopped":
            return Loaded("stopped", state=answer[1].decode())
        return Loaded(outcome)

    def finish(self, rows_read: int, summary: dict[str, Any] | None = None, expected: int = 0,
               cost: float = 0.0) -> bool:
        """End the loading (with the exact ``summary``, ``expected`` and ``cost`` when given);
        False when the lease was lost."""
        extra = [orjson.dumps(summary), expected, cost] if summary is not None else ["", 0, 0]
        return bool(self._finish(keys=[self.store.keys.campaign(self.campaign_id), self.lease.key],
                                 args=[self.lease.token, rows_read, *extra]))


def after(chunk: Priced, row: int) -> Priced:
    """The part of ``chunk`` after spreadsheet row ``row`` (all of it when ``row`` is 0)."""
    if row <= 0 or chunk.last_row <= row:
        return chunk if row <= 0 else replace(chunk, messages=chunk.messages.slice(0, 0), rejects=[])
    keep = pc.greater(chunk.messages.column("row"), row)
    return replace(chunk, messages=chunk.messages.filter(keep), rejects=[r for r in chunk.rejects if r.row > row])


def _blobs(messages: pa.Table, zones: list[str] | None) -> list[tuple[int, bytes, str]]:
    """``(size, compressed messages, time zones)`` of each batch of a chunk's messages."""
    columns = payload.stored_columns(lambda name, _: messages.column(name).to_pylist())
    return [(hi - lo, payload.encode({k: v[lo:hi] for k, v in columns.items()}), zones[lo] if zones is not None else "")
            for lo, hi in batch_bounds(messages.num_rows, zones)]
