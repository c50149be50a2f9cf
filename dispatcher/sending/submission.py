"""Preflight and submit a recipient file: the one path ``dispatcher submit`` and the console share.

The command line and the console's API both build :class:`SubmitOptions` from what the user
gave, run :func:`preflight_file`, show or return the preflight, then call :func:`submit_result`,
so a file is checked, refused and stored the same way whichever door it came through.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import redis

from dispatcher.instasent.client import InstasentClient
from dispatcher.preflight.check import run_preflight
from dispatcher.preflight.hlr import Progress
from dispatcher.preflight.lookups import Confirm
from dispatcher.preflight.result import PreflightOptions, PreflightResult, check_sendable
from dispatcher.preflight.stream import preflight_streamed
from dispatcher.sending import campaigns
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
                   progress: Progress | None = None, confirm: Confirm | None = None, *,
                   streamed: bool = False) -> PreflightResult:
    """Preflight the file at ``path`` with a fresh Instasent client (prices, balance, HLR).

    HLR lookups are paid for only with ``options.hlr`` True, or when ``confirm`` (a person, shown
    their estimate) says yes; without it they are only estimated (see ``preflight.lookups``).

    ``streamed`` reads it chunk by chunk in bounded memory (:mod:`dispatcher.preflight.stream`):
    the same totals and rejects, but no ``messages`` (nothing to submit from it).

    Raises:
        InputError: a file or option the user must fix.
        BudgetExceeded: when lookups asked for, with the messages, would exceed the balance or ``max_cost``.
        DispatcherError: Instasent or Redis trouble.
    """
    with InstasentClient.from_settings(settings) as instasent:
        if streamed:
            return preflight_streamed(path, options, settings=settings, redis=client, client=instasent,
                                      progress=progress, confirm=confirm)
        return run_preflight(path, options, settings=settings, redis=client, client=instasent, progress=progress,
                             confirm=confirm)


def submit_result(store: CampaignStore, ops: BatchOps, enqueuer: campaigns.Enqueuer, settings: Settings,
                  result: PreflightResult, options: SubmitOptions) -> str:
    """Store and queue what ``result`` accepted, after the budget guard; returns the campaign id.

    The campaign is named ``options.name``, else after the file.

    Raises:
        InputError: when the list leaves no message to send, with the preflight's reasons.
        BudgetExceeded: when the cost exceeds the balance or ``max_cost``.
    """
    check_sendable(result)
    checked = options.validated()  # idempotent: parsing twice costs nothing and keeps one path
    return campaigns.submit_preflight(store, ops, enqueuer, settings, result=result, options=checked.preflight,
                                      name=checked.name or Path(result.file).name,
                                      send_window=checked.send_window, expire_after_s=checked.expire_after_s)
