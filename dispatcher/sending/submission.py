"""Preflight and submit a recipient file: the one path ``dispatcher submit`` and the console share.

The command line and the console's API both build :class:`SubmitOptions` from what the user
gave and call :func:`preflight_file` for a preflight. To submit, the console calls
:func:`submit_file` and ``dispatcher submit`` calls :func:`dispatcher.sending.loading.submit_file`
(which this wraps) with its own screens, so a file is checked, refused and stored the same way
whichever door it came through, sending while it loads, in memory that does not grow with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import orjson
import redis

from dispatcher.instasent.client import InstasentClient
from dispatcher.preflight.hlr import Progress
from dispatcher.preflight.lookups import Confirm
from dispatcher.preflight.result import PreflightOptions, PreflightResult
from dispatcher.preflight.stream import preflight_streamed
from dispatcher.sending import campaigns, loading
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.store import CampaignStore
from dispatcher.sending.windows import Window, parse_duration, parse_window
from dispatcher.settings import Settings


@dataclass(frozen=True, slots=True)
class SubmitOptions:
    """What ``submit`` takes besides the file: the preflight options, a name, a window and an expiry.

    ``window`` is ``09:00-21:00`` with optional ``days`` (``mon-fri``); ``expire_after`` a duration
    such as ``6h``. :meth:`validated` parses them into :attr:`send_window` and :attr:`expire_after_s`.
    """

    preflight: PreflightOptions
    name: str | None = None
    window: str | None = None
    days: str | None = None
    expire_after: str | None = None
    send_window: Window | None = None
    expire_after_s: float | None = None

    def validated(self) -> SubmitOptions:
        """The options checked, with the window and expiry parsed.

        Raises:
            InputError: for malformed or contradictory options, in one sentence.
        """
        return replace(self, preflight=self.preflight.validated(),
                       send_window=parse_window(self.window, self.days) if self.window else None,
                       expire_after_s=parse_duration(self.expire_after) if self.expire_after else None)


def preflight_file(path: str | Path, options: PreflightOptions, settings: Settings, client: redis.Redis,
                   progress: Progress | None = None, confirm: Confirm | None = None) -> PreflightResult:
    """Preflight the file at ``path`` with a fresh Instasent client (prices, balance, HLR).

    It reads the file chunk by chunk in bounded memory (:mod:`dispatcher.preflight.stream`):
    ``rejects`` spill to a temporary file and ``messages`` is empty (nothing to submit from it).
    HLR lookups are paid for only with ``options.hlr`` True, or when ``confirm`` (a person, shown
    their estimate) says yes; without it they are only estimated (see ``preflight.lookups``).

    Raises:
        InputError: a file or option the user must fix.
        BudgetExceeded: when lookups asked for, with the messages, would exceed the balance or ``max_cost``.
        DispatcherError: Instasent or Redis trouble.
    """
    with InstasentClient.from_settings(settings) as instasent:
        return preflight_streamed(path, options, settings=settings, redis=client, client=instasent,
                                  progress=progress, confirm=confirm)


def submit_file(store: CampaignStore, ops: BatchOps, enqueuer: campaigns.Enqueuer, settings: Settings,
                path: str | Path, options: SubmitOptions, *, shown_as: str | None = None,
                progress: Progress | None = None, confirm: Confirm | None = None,
                on_counted: Callable[[PreflightResult], None] | None = None,
                on_created: Callable[[str], None] | None = None,
                chunk_rows: int = loading.LOAD_CHUNK_ROWS) -> tuple[str, PreflightResult, loading.Loaded]:
    """Count, guard, create and load a campaign from the file at ``path`` with a fresh Instasent
    client (:func:`dispatcher.sending.loading.submit_file`): sending starts with the first chunk.

    ``shown_as`` is the user's name for the file when ``path`` is a temporary copy (an upload): the
    preflight, the refusals and the campaign name it. The campaign is named ``options.name``, else
    after the file. ``on_counted(result)`` sees the preflight before the guard judges it,
    ``on_created(id)`` the campaign before it loads. Returns ``(campaign id, the preflight, how
    loading ended)``; the call returns once loading ends.

    Raises:
        InputError: a file or option to fix, or a list that leaves no message to send (nothing is stored).
        BudgetExceeded: when the cost exceeds the balance or ``max_cost`` (nothing is stored).
        DispatcherError: Instasent or Redis trouble.
    """
    checked = options.validated()  # idempotent: parsing twice costs nothing and keeps one path

    def counted(result: PreflightResult) -> None:
        if shown_as is not None:
            result.file = shown_as  # before the guard's sentences (and a refusal's preflight) name it
        if on_counted is not None:
            on_counted(result)

    with InstasentClient.from_settings(settings) as instasent:
        campaign_id, result, loaded = loading.submit_file(
            store, ops, enqueuer, settings, path=path, options=checked.preflight, client=instasent,
            name=checked.name or shown_as or Path(path).name, send_window=checked.send_window,
            expire_after_s=checked.expire_after_s, progress_cb=progress, on_counted=counted, on_created=on_created,
            confirm=confirm, chunk_rows=chunk_rows)
    if shown_as is not None:
        _record_file_name(store, campaign_id, shown_as)
    return campaign_id, result, loaded


def _record_file_name(store: CampaignStore, campaign_id: str, name: str) -> None:
    """Show ``name`` as the campaign's file (its options and preflight summary, in ``status``)
    where loading recorded the temporary path it read; loading's own record of the path (for
    ``resume``) is left alone."""
    key = store.keys.campaign(campaign_id)
    recorded = store.redis.hmget(key, "options", "preflight")
    fields = {field: orjson.dumps({**orjson.loads(raw), "file": name})
              for field, raw in zip(("options", "preflight"), recorded, strict=True) if raw}
    if fields:
        store.redis.hset(key, mapping=fields)
