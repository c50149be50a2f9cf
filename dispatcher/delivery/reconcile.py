"""``dispatcher reconcile``: resolve a campaign's ``unknown`` messages, then send what was not sent.

Held delivery reports are tried first (those whose send is recorded by now are matched against it;
a report alone never proves a message was sent, see ``dispatcher.delivery.reports``). Each batch still
unknown after the grace period is then handed back to the workers, whose claim makes them ask
Instasent by ``clientId`` before anything is sent again (see ``dispatcher.sending.attempt``); this command
itself never POSTs a message, so it cannot send one twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from dispatcher.delivery.reports import DeliveryBook
from dispatcher.errors import InvalidTransition
from dispatcher.schema.names import State
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.enqueuer import Enqueuer
from dispatcher.sending.store import CampaignStore


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """What ``reconcile`` did: reports applied from the hold, batches handed to the workers."""

    campaign: str
    held_applied: int
    batches: list[int]
    unknown_before: int


def reconcile(store: CampaignStore, ops: BatchOps, book: DeliveryBook, enqueuer: Enqueuer, campaign_id: str,
              grace_s: float = 60.0, now: float | None = None) -> Reconciliation:
    """Resolve campaign ``campaign_id``'s unknown messages; see the module docstring.

    Raises:
        InputError: when there is no such campaign.
        InvalidTransition: when the campaign is paused or failed (``resume`` it instead).
    """
    info = store.get(campaign_id)
    if info.state in (State.PAUSED.value, State.FAILED.value):
        raise InvalidTransition(f"campaign {campaign_id} is {info.state}; "
                                f"`dispatcher resume {campaign_id}` reconciles as it resumes.")
    held = book.retry_held()
    now = time.time() if now is None else now
    batches = ops.unknown_batches(campaign_id, info.batches, older_than=now - grace_s)
    reopened = ops.reopen(campaign_id, batches)
    enqueuer.enqueue(campaign_id, reopened)
    return Reconciliation(campaign_id, held, reopened, info.counts["unknown"])
