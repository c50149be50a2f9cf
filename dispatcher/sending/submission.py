"""Preflight and submit a recipient file: the one path the command line, the console, schedules and
the demo share.

Each builds :class:`SubmitOptions` (or, for a preflight, :class:`PreflightOptions`) from what it
was given and calls :func:`preflight` or :func:`submit`, so a file is checked, refused and stored
the same way whichever door it came through, sending while it loads, in memory that does not
grow with it. They differ only in what they show: the callbacks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import orjson
import redis

from dispatcher.errors import InputError, UnknownItem
from dispatcher.instasent.client import InstasentClient
from dispatcher.keys import Keys
from dispatcher.preflight.bound import CostBound
from dispatcher.preflight.check import PreflightClient
from dispatcher.preflight.hlr import Progress
from dispatcher.preflight.lookups import Confirm
from dispatcher.preflight.result import PreflightOptions, PreflightResult
from dispatcher.preflight.stream import PREFLIGHT_CHUNK_ROWS, PREFLIGHT_WORKERS, StreamedPreflight
from dispatcher.sending import fairshare, kept, loading
from dispatcher.sending.accounts import AccountBook, ResolvedAccount
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.chunkstore import Loaded
from dispatcher.sending.enqueuer import Enqueuer
from dispatcher.sending.store import CampaignStore
from dispatcher.sending.windows import Window, parse_duration, parse_window
from dispatcher.settings import Settings


@dataclass(frozen=True, slots=True)
class SubmitOptions:
    """What ``submit`` takes besides the file: the preflight options, a name, a window and an expiry.

    ``window`` is ``09:00-21:00`` with optional ``days`` (``mon-fri``); ``expire_after`` a duration
    such as ``6h``. :meth:`validated` parses them into :attr:`send_window` and :attr:`expire_after_s`
    (which, given already parsed and without the text, it keeps: a schedule stores seconds).
    """

    preflight: PreflightOptions
    name: str | None = None
    window: str | None = None
    days: str | None = None
    expire_after: str | None = None
    send_window: Window | None = None
    expire_after_s: float | None = None
    #: The list's columns carried into the report: ``all`` or ``a,b`` (see ``dispatcher.sending.kept``).
    keep_columns: str | None = None
    #: Its weight in its lane's fair share: ``low``, ``normal`` (None: normal) or ``high``.
    priority: str | None = None

    def validated(self) -> SubmitOptions:
        """The options checked, with the window and expiry parsed.

        Raises:
            InputError: for malformed or contradictory options, in one sentence.
        """
        return replace(self, preflight=self.preflight.validated(), priority=fairshare.parse_priority(self.priority),
                       send_window=parse_window(self.window, self.days) if self.window else self.send_window,
                       expire_after_s=parse_duration(self.expire_after) if self.expire_after else self.expire_after_s)


def account_of(settings: Settings, client: redis.Redis, name: str) -> ResolvedAccount:
    """The account ``name`` ready to send with (its token decrypted, never shown).

    Raises:
        InputError: when no account has that name (naming the command that lists them).
        ConfigurationError: for ``default`` without ``INSTASENT_TOKEN``, or when its token cannot be
            decrypted (``DISPATCHER_SECRET_KEY``).
    """
    try:
        return AccountBook(client, Keys(settings.key_prefix), settings).resolve(name)
    except UnknownItem as exc:
        raise InputError(str(exc)) from None


def preflight(path: str | Path, options: PreflightOptions, *, settings: Settings, redis: redis.Redis,
              client: PreflightClient | None = None, progress: Progress | None = None,
              confirm: Confirm | None = None, chunk_rows: int = PREFLIGHT_CHUNK_ROWS) -> PreflightResult:
    """Preflight the file at ``path`` for the account ``options.account``: with ``client``, else a
    fresh Instasent client of that account (prices, balance, HLR) closed at the end.

    It reads the file ``chunk_rows`` rows at a time in bounded memory
    (:mod:`dispatcher.preflight.stream`): ``rejects`` spill to a temporary file and ``messages`` is
    empty (nothing to submit from it). HLR lookups are paid for only with ``options.hlr`` True, or
    when ``confirm`` (a person, shown their estimate) says yes; without it they are only estimated
    (see ``preflight.lookups``).

    Raises:
        InputError: a file or option the user must fix.
        BudgetExceeded: when lookups asked for, with the messages, would exceed the balance or ``max_cost``.
        DispatcherError: Instasent or Redis trouble.
    """
    options = options.validated()
    settings = account_of(settings, redis, options.account).settings if client is None else settings
    with _client(settings, client) as instasent:
        return StreamedPreflight(path, options, settings=settings, redis=redis, client=instasent, progress=progress,
                                 chunk_rows=chunk_rows, confirm=confirm).count(workers=PREFLIGHT_WORKERS)


def submit(store: CampaignStore, ops: BatchOps, enqueuer: Enqueuer, settings: Settings, path: str | Path,
           options: SubmitOptions, *, client: PreflightClient | None = None, shown_as: str | None = None,
           progress: Progress | None = None, confirm: Confirm | None = None,
           on_counted: Callable[[PreflightResult], None] | None = None,
           on_bound: Callable[[CostBound, float, str], None] | None = None,
           on_created: Callable[[str], None] | None = None,
           chunk_rows: int = loading.LOAD_CHUNK_ROWS) -> tuple[str, PreflightResult, Loaded]:
    """Count, guard, create and load a campaign from the file at ``path`` for the account
    ``options.preflight.account``, asking Instasent through ``client`` (that account's), else a
    fresh client of the account closed at the end (:func:`dispatcher.sending.loading.create_and_load`):
    sending starts with the first chunk.

    ``shown_as`` is the user's name for the file when ``path`` is a temporary copy (an upload): the
    preflight, the refusals and the campaign name it. The campaign is named ``options.name``, else
    after the file. ``on_counted(result)`` sees the exact preflight: before the guard judges it
    when it is counted first, at the end of the one pass otherwise; ``on_bound(bound, balance,
    currency)`` runs when the one pass is chosen, before anything is stored; ``on_created(id)``
    sees the campaign before it loads. Returns ``(campaign id, the preflight, how loading
    ended)``; the call returns once loading ends.

    Raises:
        InputError: a file or option to fix, or a list that leaves no message to send (nothing is stored).
        BudgetExceeded: when the cost exceeds the balance or ``max_cost`` (nothing is stored).
        DispatcherError: Instasent or Redis trouble.
    """
    checked = options.validated()  # idempotent: parsing twice costs nothing and keeps one path
    keep = kept.parse_keep_columns(checked.keep_columns)
    if keep is not None:
        kept.chosen_columns(path, keep)  # a wrong name is refused before anything is stored

    def counted(result: PreflightResult) -> None:
        if shown_as is not None:
            result.file = shown_as  # before the guard's sentences (and a refusal's preflight) name it
        if on_counted is not None:
            on_counted(result)

    account = account_of(settings, store.redis, checked.preflight.account)
    with _client(account.settings, client) as instasent:
        campaign_id, result, loaded = loading.create_and_load(
            store, ops, enqueuer, account.settings, path=path, options=checked.preflight, client=instasent,
            organization=account.organization or "",
            name=checked.name or shown_as or Path(path).name, send_window=checked.send_window,
            expire_after_s=checked.expire_after_s, progress_cb=progress, on_counted=counted, on_bound=on_bound,
            on_created=on_created, confirm=confirm, chunk_rows=chunk_rows,
            priority=checked.priority or fairshare.DEFAULT_PRIORITY)
    if shown_as is not None:
        _record_file_name(store, campaign_id, shown_as)
    if keep is not None:
        kept.store_kept_columns(store, campaign_id, path, keep)
    return campaign_id, result, loaded


@contextmanager
def _client(settings: Settings, client: PreflightClient | None) -> Iterator[PreflightClient]:
    """``client`` as it is, or a fresh Instasent client for ``settings``, closed on the way out."""
    if client is not None:
        yield client
        return
    with InstasentClient.from_settings(settings) as fresh:
        yield fresh


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
