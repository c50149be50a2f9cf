"""POST a batch's items in as few requests as Instasent takes, one rate-limit slot and one lease
renewal per request.

A 413 halves the chunk and tries each half; a single item that is still too large is rejected on
its own (with the reason) and the rest go on. Before every request ``before_post`` takes a slot
for the split chunks and renews the batch's lease; it stops the loop by raising
:class:`StopPosting` (no slot soon enough, or the lease is lost), and what was already sent is
kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dispatcher.errors import ConnectionFailed, DispatcherError, PayloadTooLarge
from dispatcher.instasent.client import InstasentClient
from dispatcher.instasent.models import BulkIds, RejectedItem

#: A bulk item in wire form (``dispatcher.instasent.models.wire_item``).
WireItem = dict[str, Any]


class StopPosting(Exception):
    """Raised by ``before_post`` to end the loop before the next request."""


class NoSlot(StopPosting):
    """No rate-limit slot within the longest wait: try again in ``wait_s`` seconds."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"no rate-limit slot for {wait_s:.1f} s")
        self.wait_s = wait_s


class LeaseLost(StopPosting):
    """The batch's lease cannot cover a POST: another claim took it (``stale``) or it ran out."""

    def __init__(self, stale: bool) -> None:
        super().__init__("another worker claimed the batch" if stale else "the batch's lease ran out")
        self.stale = stale


class NotReplicated(StopPosting):
    """Too few Redis replicas acknowledged the batch's claim in time: no POST until they do (issue 23)."""

    def __init__(self, acks: int, needed: int) -> None:
        super().__init__(f"only {acks} of the {needed} Redis replicas needed acknowledged the claim in time")
        self.acks = acks
        self.needed = needed


#: ``before_post(items in the chunk, is it the first request)`` -> the request's deadline
#: (``time.monotonic()``); raises :class:`StopPosting` to stop.
BeforePost = Callable[[int, bool], float]


@dataclass
class Posted:
    """What the requests did: the merged answer, the items not sent, and why sending stopped."""

    result: BulkIds = field(default_factory=BulkIds)
    left: list[WireItem] = field(default_factory=list)
    #: The error of the request that failed (``None`` when none failed).
    error: DispatcherError | None = None
    #: Why the loop stopped before a request (``None`` when it did not).
    stop: StopPosting | None = None
    #: Requests that reached Instasent (any answer, including errors; not one that could not connect).
    requests: int = 0


def post_splitting(client: InstasentClient, items: list[WireItem], before_post: BeforePost) -> Posted:
    """POST ``items``, halving any chunk Instasent finds too large (413); see the module docstring."""
    posted = Posted()
    stack = [items]
    first = True
    while stack:
        chunk = stack.pop()
        try:
            deadline = before_post(len(chunk), first)
        except StopPosting as stop:
            posted.left, posted.stop = [i for part in [chunk, *stack] for i in part], stop
            return posted
        first = False
        posted.requests += 1
        try:
            result = client.send_bulk_wire(chunk, deadline=deadline)
        except PayloadTooLarge as exc:
            if len(chunk) == 1:
                item = chunk[0]
                posted.result.rejected[item["clientId"]] = RejectedItem(item["clientId"], item["to"],
                                                                        {"size": [str(exc)]})
                continue
            half = len(chunk) // 2
            stack += [chunk[half:], chunk[:half]]
            continue
        except DispatcherError as exc:
            if isinstance(exc, ConnectionFailed):
                posted.requests -= 1  # it never reached Instasent: not a POST made
            posted.left, posted.error = [i for part in [chunk, *stack] for i in part], exc
            return posted
        posted.result.accepted.update(result.accepted)
        posted.result.rejected.update(result.rejected)
        posted.result.unmatched.extend(result.unmatched)
    return posted
