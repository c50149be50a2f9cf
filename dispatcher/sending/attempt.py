"""Send one batch: claim it, reconcile if an earlier outcome is unknown, take a rate-limit slot,
``POST /sms/bulk``, record every message's outcome. The Celery task is a thin shell around
:func:`send_batch` and only acts on the returned :class:`BatchOutcome`.

Outcomes by error (see :mod:`dispatcher.errors`):

* nothing was sent (connect error, 4xx): the batch goes back to pending and is retried with
  exponential backoff and jitter; after ``max_attempts`` its messages are ``failed``;
* 429: the lane pauses for every worker until ``X-RateLimit-Reset``; no attempt is counted;
* it may have been processed (timeout, dropped connection, 5xx, items missing from the answer):
  the messages become ``unknown`` and the batch is reconciled by ``clientId`` before any resend;
* 413: the batch is split in halves; 402 pauses the campaign (``insufficient_funds``); 401 fails
  it (configuration error).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from dispatcher.delivery.optout import suppressed_indexes
from dispatcher.errors import (
    AuthenticationFailed,
    DispatcherError,
    InsufficientFunds,
    OutcomeUnknown,
    PayloadTooLarge,
    PermanentError,
    RateLimited,
)
from dispatcher.instasent.client import InstasentClient
from dispatcher.instasent.models import BulkResult, SmsItem
from dispatcher.sending import ledger, payload
from dispatcher.sending.batches import BatchOps, Claim
from dispatcher.sending.lifecycle import State
from dispatcher.sending.ratelimit import Lane, RateLimiter
from dispatcher.sending.store import CampaignStore
from dispatcher.sending.windows import Window, is_open, next_open
from dispatcher.settings import Settings

#: Lane names of the endpoints a batch uses.
BULK_LANE = "sms_bulk"
LIST_LANE = "sms_list"


@dataclass
class SendContext:
    """Everything a worker process needs to send batches; built once per process."""

    settings: Settings
    client: InstasentClient
    store: CampaignStore
    ops: BatchOps
    limiter: RateLimiter
    #: Current Unix time in seconds; tests inject their own to check send windows and expiry.
    clock: Callable[[], float] = time.time

    @property
    def bulk_lane(self) -> Lane:
        return Lane(BULK_LANE, self.settings.rate_limit_per_min, self.settings.message_rate_per_s)

    @property
    def list_lane(self) -> Lane:
        return Lane(LIST_LANE, self.settings.rate_limit_per_min)


@dataclass
class BatchOutcome:
    """What the task must do next: retry in ``retry_in`` seconds (or not), enqueue ``enqueue``."""

    action: str
    retry_in: float | None = None
    enqueue: list[int] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    campaign_state: str = ""


def backoff(fails: int, base_s: float, cap_s: float) -> float:
    """Exponential backoff with jitter: about ``base * 2**(fails-1)``, between half and all of it."""
    delay = min(cap_s, base_s * 2 ** max(0, fails - 1))
    return delay * random.uniform(0.5, 1.0)


def send_batch(sender: SendContext, cid: str, n: int) -> BatchOutcome:
    """Do whatever batch ``n`` of campaign ``cid`` needs next, at most one POST's worth."""
    claim = sender.ops.claim(cid, n, sender.settings.lease_s)
    if claim.kind == "done":
        # A redelivered task: re-enqueue what this batch reserved but nobody has started.
        reserved = range(*claim.reserved) if claim.reserved else range(0)
        return BatchOutcome("done", enqueue=sender.ops.reserved_but_unclaimed(cid, reserved),
                            summary={"batch": n, "note": "already done"})
    if claim.kind == "busy":
        return BatchOutcome("busy", retry_in=claim.wait_s + 0.5, summary={"batch": n, "note": "held by a worker"})
    if not claim.claimed:
        return BatchOutcome("skip", summary={"batch": n, "note": f"campaign {claim.state or 'missing'}"},
                            campaign_state=claim.state)
    return _Attempt(sender, cid, n, claim).run()


class _Attempt:
    """One claimed attempt at a batch; every path ends in exactly one ``record`` call."""

    def __init__(self, sender: SendContext, cid: str, n: int, claim: Claim) -> None:
        self.s = sender
        self.cid = cid
        self.n = n
        self.claim = claim
        self.attempt = claim.attempts + 1
        self.messages = payload.decode(claim.payload, n)
        self.records: list[tuple[int, str]] = []
        self.summary: dict[str, Any] = {"batch": n, "attempt": self.attempt, "accepted": 0, "rejected": 0,
                                        "reconciled": 0, "unknown": 0, "failed": 0}
        existing = {i: ledger.decode(r) for i, r in claim.records.items()}
        self.todo = [i for i in range(len(self.messages))
                     if i not in existing or existing[i].status == "unknown"]
        self.unknown_before = {i for i, r in existing.items() if r.status == "unknown"}
        # True until Instasent has been asked which of ``todo`` it already has.
        self.needs_reconcile = claim.must_reconcile
        self.lane = sender.bulk_lane

    # -- the attempt --------------------------------------------------------------------------
    def run(self) -> BatchOutcome:
        try:
            now = self.s.clock()
            expired = self.claim.expires_at is not None and now >= self.claim.expires_at
            # Reconciling a cancelled campaign's batch never sends, so it need not wait for a window.
            if not expired and self.claim.kind == "send" and self.claim.send_window and self.claim.zones:
                waiting = self._wait_for_window(now)
                if waiting is not None:
                    return waiting
            if self.needs_reconcile and self.todo:
                wait = self._reconcile()
                if wait > 0:
                    return self._finish("rate_limited", otherwise=self._pending_state(), retry_in=wait)
                if self.claim.kind == "reconcile":  # the campaign was cancelled: never resend
                    self.records += [(i, ledger.encode("cancelled", self.attempt - 1, "cancelled")) for i in self.todo]
                    return self._finish("done", otherwise="p")
            if expired:
                return self._expire("expired before it could be sent")
            self._skip_suppressed()
            if not self.todo:
                return self._finish("done", otherwise="p")
            wait = self.s.limiter.acquire(self.s.bulk_lane, len(self.todo), self.s.settings.max_slot_wait_s)
            if wait > 0:
                return self._finish("rate_limited", otherwise="p", retry_in=wait)
            return self._post()
        except RateLimited as exc:
            self.s.limiter.pause_until(self.lane, exc.reset_at or time.time() + 1)
            return self._finish("rate_limited", otherwise=self._pending_state(), error=str(exc),
                                retry_in=max(0.5, (exc.reset_at or time.time() + 1) - time.time()))
        except DispatcherError as exc:
            return self._on_error(exc, posted=False)

    def _skip_suppressed(self) -> None:
        """Numbers put on the suppression list since the preflight (an opt-out) are not sent."""
        numbers = [self.messages.to[i] for i in self.todo]
        skipped = {self.todo[i] for i in suppressed_indexes(self.s.store.redis, self.s.store.keys, numbers)}
        if skipped:
            self.records += [(i, ledger.encode("suppressed", self.attempt - 1, "opted out")) for i in skipped]
            self.todo = [i for i in self.todo if i not in skipped]
            self.summary["suppressed"] = len(skipped)

    def _wait_for_window(self, now: float) -> BatchOutcome | None:
        """Park the batch when its recipients' send window is closed; None when it is open."""
        window = Window.from_json(orjson.loads(self.claim.send_window))
        moment = datetime.fromtimestamp(now, UTC)
        if is_open(window, self.claim.zones, moment):
            return None
        opening = next_open(window, self.claim.zones, moment)
        if opening is None:
            return self._expire("no hour is inside the send window in all of the number's time zones")
        until = opening.timestamp()
        if self.claim.expires_at is not None:
            until = min(until, self.claim.expires_at)
        reserved = self.s.ops.park(self.cid, self.n, until, unknown=self.needs_reconcile)
        self.summary.update(action="waiting", until=opening.isoformat())
        return BatchOutcome("waiting", enqueue=list(reserved), summary=self.summary)

    def _expire(self, reason: str) -> BatchOutcome:
        """Mark every unsent message ``expired`` (after resolving unknown ones: they may be sent)."""
        if self.needs_reconcile and self.todo:
            wait = self._reconcile()
            if wait > 0:
                return self._finish("rate_limited", otherwise=self._pending_state(), retry_in=wait)
        self.records += [(i, ledger.encode("expired", self.attempt - 1, reason)) for i in self.todo]
        self.summary["expired"] = len(self.todo)
        return self._finish("expired", otherwise="p", give_up=True)

    def _reconcile(self) -> float:
        """Resolve messages whose earlier POST may have gone out, by asking Instasent by clientId.

        Returns 0.0 when done, else the seconds to wait for a ``GET /sms`` slot.
        """
        self.lane = self.s.list_lane
        wait = self.s.limiter.acquire(self.lane, 1, self.s.settings.max_slot_wait_s)
        if wait > 0:
            return wait
        ids = {self.messages.client_id(self.cid, i): i for i in self.todo}
        found = self.s.client.find_by_client_ids(list(ids))
        self.needs_reconcile = False
        self.lane = self.s.bulk_lane
        for cid_value, sms in found.items():
            self.records.append((ids[cid_value], ledger.encode("sent", self.attempt - 1, sms.id)))
        self.summary["reconciled"] = len(found)
        done = {ids[c] for c in found}
        # Not found: proven unsent, back to pending (their 'unknown' records are removed).
        self.records += [(i, "-") for i in self.todo if i not in done and i in self.unknown_before]
        self.unknown_before -= {i for i in self.todo if i not in done}
        self.todo = [i for i in self.todo if i not in done]
        return 0.0

    def _post(self) -> BatchOutcome:
        items = [self.messages.item(self.cid, i) for i in self.todo]
        index = {item.client_id: i for item, i in zip(items, self.todo, strict=True)}
        result, left, error = post_splitting(self.s.client, items)
        self.s.limiter.observe(self.s.bulk_lane, self.s.client.rate_limits.get("POST /sms/bulk"))
        left_ids = {item.client_id for item in left}
        missing = self._record_result(result, [index[c] for c in index if c not in left_ids])
        if error is None:
            if missing:
                return self._finish("unknown", otherwise="u", posted=True, streak="ok",
                                    retry_in=self.s.settings.reconcile_delay_s)
            return self._finish("done", otherwise="p", posted=True, streak="ok")
        self.todo = [index[item.client_id] for item in left]
        if isinstance(error, RateLimited):
            raise error
        return self._on_error(error, posted=True)

    def _record_result(self, result: BulkResult, sent_indexes: Sequence[int]) -> int:
        """Turn a bulk answer into records; returns how many items the answer did not mention."""
        missing = 0
        for i in sent_indexes:
            cid_value = self.messages.client_id(self.cid, i)
            if cid_value in result.accepted:
                self.records.append((i, ledger.encode("sent", self.attempt, result.accepted[cid_value].id)))
                self.summary["accepted"] += 1
            elif cid_value in result.rejected:
                rejected = result.rejected[cid_value]
                if rejected.already_used:  # proof that an earlier attempt was accepted
                    self.records.append((i, ledger.encode("sent", self.attempt, "")))
                    self.summary["reconciled"] += 1
                else:
                    self.records.append((i, ledger.encode("rejected", self.attempt, rejected.reason)))
                    self.summary["rejected"] += 1
            else:
                self.records.append((i, ledger.encode("unknown", self.attempt, "missing from Instasent's answer")))
                missing += 1
        self.summary["unknown"] += missing
        return missing

    # -- errors ---------------------------------------------------------------------------------
    def _on_error(self, exc: DispatcherError, posted: bool) -> BatchOutcome:
        settings = self.s.settings
        error = str(exc)
        if isinstance(exc, InsufficientFunds):
            outcome = self._finish("paused", otherwise=self._pending_state(), error=error)
            self._set_state(State.PAUSED, "insufficient_funds")
            return outcome
        if isinstance(exc, AuthenticationFailed):
            outcome = self._finish("failed", otherwise=self._pending_state(), error=error)
            self._set_state(State.FAILED, f"configuration error: {error}")
            return outcome
        fails = self.claim.fails + 1
        give_up = fails >= settings.max_attempts or isinstance(exc, PermanentError)
        if exc.maybe_processed:
            self.records += [(i, ledger.encode("unknown", self.attempt, error)) for i in self.todo]
            self.summary["unknown"] += len(self.todo)
            retry = None if give_up else max(settings.reconcile_delay_s, self._backoff(fails))
            return self._finish("unknown", otherwise="u", error=error, posted=posted, failed_attempt=True,
                                give_up=give_up, streak="failed" if give_up else "", retry_in=retry)
        if give_up:
            uncertain = set(self.todo) if self.needs_reconcile else self.unknown_before
            pending = [i for i in self.todo if i not in uncertain]
            self.records += [(i, ledger.encode("failed", self.attempt, error)) for i in pending]
            self.records += [(i, ledger.encode("unknown", self.attempt, error)) for i in self.todo
                             if i in uncertain and i not in self.unknown_before]
            self.summary["failed"] += len(pending)
            return self._finish("failed", otherwise=self._pending_state(), error=error, failed_attempt=True,
                                give_up=True, streak="failed")
        return self._finish("retry", otherwise=self._pending_state(), error=error, failed_attempt=True,
                            retry_in=self._backoff(fails))

    def _pending_state(self) -> str:
        """Batch state when this attempt leaves messages unfinished: unknown ones need reconciling."""
        return "u" if self.needs_reconcile or self.unknown_before else "p"

    def _backoff(self, fails: int) -> float:
        return backoff(fails, self.s.settings.retry_backoff_s, self.s.settings.retry_backoff_max_s)

    def _set_state(self, target: State, reason: str) -> None:
        # Another worker may already have moved it (paused, cancelled): nothing more to do then.
        with contextlib.suppress(DispatcherError):
            self.s.store.transition(self.cid, target, reason)

    def _finish(self, action: str, *, otherwise: str, error: str = "", posted: bool = False,
                failed_attempt: bool = False, give_up: bool = False, streak: str = "",
                retry_in: float | None = None) -> BatchOutcome:
        recorded = self.s.ops.record(
            self.cid, self.n, self.records, otherwise=otherwise, error=error, posted=posted,
            failed_attempt=failed_attempt, give_up=give_up, streak=streak,
            max_consecutive_failures=self.s.settings.max_consecutive_failures,
        )
        if recorded.batch_state == "d":
            retry_in = None
        self.summary["action"] = action
        if error:
            self.summary["error"] = error[:200]
        return BatchOutcome(action, retry_in=retry_in, enqueue=list(recorded.reserved), summary=self.summary,
                            campaign_state=recorded.campaign_state)


def post_splitting(client: InstasentClient, items: list[SmsItem]) -> tuple[BulkResult, list[SmsItem],
                                                                          DispatcherError | None]:
    """POST ``items``, halving any chunk Instasent finds too large (413).

    Returns the merged result of the chunks that went through, the items not yet sent, and the
    error that stopped sending (``None`` when everything went through).
    """
    merged = BulkResult()
    stack = [items]
    while stack:
        chunk = stack.pop()
        try:
            result = client.send_bulk(chunk)
        except PayloadTooLarge as exc:
            if len(chunk) == 1:
                return merged, [i for part in [chunk, *stack] for i in part], exc
            half = len(chunk) // 2
            stack += [chunk[half:], chunk[:half]]
            continue
        except (OutcomeUnknown, DispatcherError) as exc:
            return merged, [i for part in [chunk, *stack] for i in part], exc
        merged.accepted.update(result.accepted)
        merged.rejected.update(result.rejected)
        merged.unmatched.extend(result.unmatched)
    return merged, [], None
