"""Send one batch: claim it, reconcile if an earlier outcome is unknown, take a rate-limit slot,
``POST /sms/bulk``, record every message's outcome. The Celery task is a thin shell around
:func:`send_batch` and only acts on the returned :class:`BatchOutcome`.

Outcomes by error (see :mod:`dispatcher.errors`):

* nothing was sent (connect error, 4xx): the batch goes back to pending and is retried with
  exponential backoff and jitter; after ``max_attempts`` its messages are ``failed``;
* 429: the lane pauses for every worker until ``X-RateLimit-Reset``; no attempt is counted;
* it may have been processed (timeout, dropped connection, 5xx, the POST deadline, items missing
  from the answer): the messages become ``unknown`` and the batch is reconciled by ``clientId``
  before any resend; a reconciliation that cannot prove absence (see
  ``InstasentClient.search_client_ids``) keeps them ``unknown``; each such round is a failed attempt;
* 413: the batch is split in halves, and an item too large on its own is ``rejected``; 402 pauses
  the campaign and every other sending campaign of its organization (``insufficient_funds``: the
  balance is the organization's); 401 fails it (configuration error).

Each campaign is sent with its account's client, on its organization's lanes
(:meth:`SendContext.for_campaign`); a campaign whose account was removed, or whose token cannot be
decrypted, fails (configuration error) without claiming anything, and ``resume`` tries it again.

Fencing: every request to Instasent is preceded by a renewal of the claim's lease under its token
(:meth:`BatchOps.renew`); when the token is stale or too little lease is left, the attempt stops
without POSTing. A POST ends by its deadline (``Settings.post_deadline``), shorter than the lease.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from dispatcher.errors import (
    AuthenticationFailed,
    ConfigurationError,
    DispatcherError,
    InsufficientFunds,
    PermanentError,
    RateLimited,
    UnknownItem,
)
from dispatcher.instasent.models import BulkIds
from dispatcher.instasent.wire import SMS_BULK
from dispatcher.preflight.suppression import SuppressionList
from dispatcher.schema.names import BatchState, State
from dispatcher.sending import ledger, payload
from dispatcher.sending.batches import Claim, ClaimKind, Streak
from dispatcher.sending.context import SendContext
from dispatcher.sending.outcome import Action, BatchOutcome, backoff
from dispatcher.sending.posting import LeaseLost, NoSlot, NotReplicated, post_splitting
from dispatcher.sending.tenancy import pause_organization
from dispatcher.sending.windows import Window, is_open, next_open
from dispatcher.settings import LEASE_MARGIN_S

#: Seconds before a batch whose claim too few replicas acknowledged is tried again.
NOT_REPLICATED_RETRY_S = 1.0


def send_batch(context: SendContext, campaign_id: str, n: int) -> BatchOutcome:
    """Do whatever batch ``n`` of campaign ``campaign_id`` needs next, at most one POST's worth."""
    try:
        context = context.for_campaign(campaign_id)
    except (UnknownItem, ConfigurationError) as exc:
        return _account_unusable(context, campaign_id, n, exc)
    slot = context.limiter.slot_request(context.bulk_lane, context.settings.max_slot_wait_s)
    claim = context.ops.claim(campaign_id, n, context.settings.lease_s, slot=slot, account=context.account)
    if claim.kind == ClaimKind.DONE:
        # A redelivered task: re-enqueue what this batch reserved but nobody has started.
        reserved = range(*claim.reserved) if claim.reserved else range(0)
        return BatchOutcome(Action.DONE, enqueue=context.ops.reserved_but_unclaimed(campaign_id, reserved),
                            summary={"batch": n, "note": "already done"})
    if claim.kind == ClaimKind.BUSY:
        return BatchOutcome(Action.BUSY, retry_in=claim.wait_s + 0.5,
                            summary={"batch": n, "note": "held by a worker"})
    if claim.kind == ClaimKind.MISSING and not context.store.known(campaign_id):
        # Never listed, so not expired either: Redis lost the campaign (see README, "Redis restarts").
        return BatchOutcome(Action.LOST, summary={"batch": n, "note": "campaign lost from Redis"})
    if not claim.claimed:
        return BatchOutcome(Action.SKIP, summary={"batch": n, "note": f"campaign {claim.state or 'expired'}"},
                            campaign_state=claim.state)
    attempt = _Attempt(context, campaign_id, n, claim)
    outcome = attempt.run()
    outcome.requests = attempt.requests
    return outcome


def _account_unusable(context: SendContext, campaign_id: str, n: int, exc: DispatcherError) -> BatchOutcome:
    """Fail a campaign whose account cannot send (removed, or its token unreadable); nothing is
    claimed, so ``resume`` (once the account is back) sends the batch."""
    with contextlib.suppress(DispatcherError):  # already failed, paused or finished by someone else
        context.store.transition(campaign_id, State.FAILED, f"configuration error: {exc}")
    return BatchOutcome(Action.SKIP, summary={"batch": n, "note": "account unusable"}, campaign_state=State.FAILED)


class _Attempt:
    """One claimed attempt at a batch; every path ends in exactly one ``record`` (or ``park``) call."""

    def __init__(self, context: SendContext, campaign_id: str, n: int, claim: Claim) -> None:
        self.context = context
        self.campaign_id = campaign_id
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
        #: Messages whose record is ``unknown`` now (before or by this attempt).
        self.unknown = {i for i, r in existing.items() if r.status == "unknown"}
        # True until Instasent has been asked which of ``todo`` it already has, with a complete answer.
        self.needs_reconcile = claim.must_reconcile
        self.search_gap = ""
        self.lane = context.bulk_lane
        self.posted = False
        #: Bulk requests this attempt made (its campaign's share of the lane, ``sending.fairshare``).
        self.requests = 0

    # -- the attempt --------------------------------------------------------------------------
    def run(self) -> BatchOutcome:
        try:
            now = self.context.clock()
            expired = self.claim.expires_at is not None and now >= self.claim.expires_at
            # Reconciling a cancelled campaign's batch never sends, so it need not wait for a window.
            if not expired and self.claim.kind == ClaimKind.SEND and self.claim.send_window and self.claim.zones:
                waiting = self._wait_for_window(now)
                if waiting is not None:
                    return waiting
            if self.needs_reconcile and self.todo:
                resolved = self._resolve()
                if resolved is not None:
                    return resolved
                if self.claim.kind == ClaimKind.RECONCILE:  # the campaign was cancelled: never resend
                    self.records += [(i, ledger.encode("cancelled", self.attempt - 1, "cancelled")) for i in self.todo]
                    return self._finish(Action.DONE, otherwise=BatchState.PENDING)
            if expired:
                return self._expire("expired before it could be sent")
            self._skip_suppressed()
            if not self.todo:
                return self._finish(Action.DONE, otherwise=BatchState.PENDING)
            if self.claim.fails >= self.context.settings.max_attempts:
                # Re-driven after giving up (its unknown messages are now proven unsent): no more resends.
                return self._give_up(f"not sent after {self.claim.fails} failed attempts")
            wait = self._slot()
            if wait > 0:
                return self._finish(Action.RATE_LIMITED, otherwise=self._pending_state(), retry_in=wait)
            return self._post()
        except LeaseLost as lost:
            return self._lease_lost(lost)
        except RateLimited as exc:
            self.context.limiter.pause_until(self.lane, exc.reset_at or time.time() + 1)
            return self._finish(Action.RATE_LIMITED, otherwise=self._pending_state(), error=str(exc),
                                retry_in=max(0.5, (exc.reset_at or time.time() + 1) - time.time()))
        except DispatcherError as exc:
            return self._on_error(exc, posted=False)

    def _slot(self) -> float:
        """Take the first request's slot (the one the claim took, if it did); 0.0 once taken,
        else the seconds to wait before trying again."""
        if self.claim.slot_s is not None:
            self.context.limiter.hold(self.context.bulk_lane, self.claim.slot_s)
        context = self.context
        return context.limiter.acquire(context.bulk_lane, len(self.todo), context.settings.max_slot_wait_s)

    def _skip_suppressed(self) -> None:
        """Numbers put on the suppression list since the preflight (an opt-out) are not sent."""
        if not self.claim.check_suppression:
            return
        numbers = [self.messages.to[i] for i in self.todo]
        store = self.context.store
        flags = SuppressionList(store.redis, store.keys, account=self.context.account).ask(numbers)
        skipped = {self.todo[i] for i in flags.nonzero()[0].tolist()}
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
        reserved, what = self.context.ops.park(self.campaign_id, self.n, until, unknown=self.needs_reconcile,
                                         token=self.claim.token)
        action = {"stale": Action.STALE, "cancelled": Action.DONE}.get(what, Action.WAITING)
        self.summary.update(action=action.value, until=opening.isoformat())
        return BatchOutcome(action, enqueue=list(reserved), summary=self.summary)

    def _expire(self, reason: str) -> BatchOutcome:
        """Mark every unsent message ``expired`` (after resolving unknown ones: they may be sent)."""
        if self.needs_reconcile and self.todo:
            resolved = self._resolve()
            if resolved is not None:
                return resolved
        self.records += [(i, ledger.encode("expired", self.attempt - 1, reason)) for i in self.todo]
        self.summary["expired"] = len(self.todo)
        return self._finish(Action.EXPIRED, otherwise=BatchState.PENDING, give_up=True)

    def _resolve(self) -> BatchOutcome | None:
        """Reconcile; the outcome to return when that could not prove what happened, else None."""
        wait = self._reconcile()
        if wait > 0:
            return self._finish(Action.RATE_LIMITED, otherwise=self._pending_state(), retry_in=wait)
        if not self.needs_reconcile:
            return None
        # The search was incomplete: what was not found may still have been sent. Keep it unknown
        # and ask again later; each such round counts as a failed attempt, so it ends.
        reason = f"reconciliation incomplete: {self.search_gap}"
        self._mark_unknown(self.todo, self.attempt - 1, reason)
        return self._retry_or_give_up(reason, posted=False)

    def _reconcile(self) -> float:
        """Resolve messages whose earlier POST may have gone out, by asking Instasent by clientId.

        Returns 0.0 when asked (``needs_reconcile`` stays True if the answer was incomplete), else
        the seconds to wait for a ``GET /sms`` slot.
        """
        self.lane = self.context.list_lane
        wait = self.context.limiter.acquire(self.lane, 1, self.context.settings.max_slot_wait_s)
        if wait > 0:
            return wait
        ids = {self.messages.client_id(self.campaign_id, i): i for i in self.todo}
        try:
            search = self.context.client.search_client_ids(list(ids), deadline=self._renew(),
                                                     next_request=self._next_list_request)
        except NoSlot as slot:  # nothing concluded: the messages stay unknown, no attempt counted
            return slot.wait_s
        self.lane = self.context.bulk_lane
        for client_id, sms in search.found.items():
            self.records.append((ids[client_id], ledger.encode("sent", self.attempt - 1, sms.id)))
        self.summary["reconciled"] = len(search.found)
        done = {ids[c] for c in search.found}
        self.todo = [i for i in self.todo if i not in done]
        self.unknown -= done
        if not search.complete:
            self.search_gap = search.reason
            return 0.0
        self.needs_reconcile = False
        # Not found, and the search was complete: proven unsent, back to pending.
        self.records += [(i, "-") for i in self.todo if i in self.unknown]
        self.unknown -= set(self.todo)
        return 0.0

    def _next_list_request(self) -> float:
        """Every page of a search takes its own ``GET /sms`` slot (a complete search needs at least
        two: the results and the empty page after them); returns the request's deadline.

        Raises:
            NoSlot: when no slot is free within ``max_slot_wait``.
        """
        wait = self.context.limiter.acquire(self.context.list_lane, 1, self.context.settings.max_slot_wait_s)
        if wait > 0:
            raise NoSlot(wait)
        return self._renew()

    def _renew(self, post: bool = False) -> float:
        """Renew the lease before a request; returns the request's deadline (``time.monotonic()``).

        Before a POST (``post``) with ``DISPATCHER_REDIS_MIN_REPLICAS`` set, the renewal (and so the
        claim before it) must be on that many replicas first: a failover then cannot lose the claim
        of a POST that went out.

        Raises:
            LeaseLost: when another claim holds the batch or too little lease is left for a request.
            NotReplicated: when too few replicas acknowledged the renewal within ``redis_replica_wait_s``.
        """
        settings = self.context.settings
        needed = settings.redis_min_replicas if post else 0
        acks, waited = 0, 0.0
        if needed:
            left, acks = self.context.ops.renew_replicated(self.campaign_id, self.n, self.claim.token,
                                                           settings.lease_s, needed, settings.redis_replica_wait_s)
            waited = settings.redis_replica_wait_s  # WAIT may have taken that long after the renewal
        else:
            left = self.context.ops.renew(self.campaign_id, self.n, self.claim.token, settings.lease_s)
        if left < 0:
            raise LeaseLost(stale=True)
        if left - waited < settings.post_deadline + LEASE_MARGIN_S:
            raise LeaseLost(stale=False)
        if acks < needed:
            raise NotReplicated(acks, needed)
        return time.monotonic() + settings.post_deadline

    def _before_post(self, size: int, first: bool) -> float:
        """Take a slot for a split chunk (the first request's was taken in ``run``), renew the lease."""
        if not first:
            wait = self.context.limiter.acquire(self.context.bulk_lane, 0, self.context.settings.max_slot_wait_s)
            if wait > 0:
                raise NoSlot(wait)
        return self._renew(post=True)

    def _post(self) -> BatchOutcome:
        client_ids = self.messages.client_ids(self.campaign_id, self.todo)
        items = self.messages.wire_items_with_ids(client_ids, self.todo)
        index = dict(zip(client_ids, self.todo, strict=True))
        posted = post_splitting(self.context.client, items, self._before_post)
        self.posted = posted.requests > 0
        self.requests += posted.requests
        self.context.limiter.observe(self.context.bulk_lane, self.context.client.rate_limits.get(SMS_BULK))
        left_ids = {item["clientId"] for item in posted.left}
        missing = self._record_result(posted.result, [(c, i) for c, i in index.items() if c not in left_ids])
        self.todo = [index[item["clientId"]] for item in posted.left]
        if isinstance(posted.stop, LeaseLost):
            return self._lease_lost(posted.stop)
        if isinstance(posted.stop, NotReplicated):
            # No POST without its claim on the replicas: tried again soon, no attempt counted.
            return self._finish(Action.RETRY, otherwise=self._pending_state(), error=str(posted.stop),
                                posted=self.posted, retry_in=NOT_REPLICATED_RETRY_S)
        if isinstance(posted.stop, NoSlot):
            return self._finish(Action.RATE_LIMITED, otherwise=self._pending_state(), posted=self.posted,
                                retry_in=posted.stop.wait_s)
        if posted.error is None:
            if missing:
                # Items missing from the answer may have been accepted: reconcile, and count the attempt.
                return self._retry_or_give_up("missing from Instasent's answer", posted=True, streak=Streak.OK)
            return self._finish(Action.DONE, otherwise=BatchState.PENDING, posted=True, streak=Streak.OK)
        if isinstance(posted.error, RateLimited):
            raise posted.error
        return self._on_error(posted.error, posted=self.posted)

    def _record_result(self, result: BulkIds, sent: Sequence[tuple[str, int]]) -> int:
        """Turn a bulk answer into records for the ``(clientId, index)`` pairs sent; returns how
        many items the answer did not mention."""
        missing: list[int] = []
        accepted = result.accepted
        sent_at: list[int] = []
        sent_ids: list[str] = []
        for client_id, i in sent:
            instasent_id = accepted.get(client_id)
            if instasent_id is not None:
                sent_at.append(i)
                sent_ids.append(instasent_id)
            elif client_id in result.rejected:
                rejected = result.rejected[client_id]
                if rejected.already_used:  # proof that an earlier attempt was accepted
                    self.records.append((i, ledger.encode("sent", self.attempt, "")))
                    self.summary["reconciled"] += 1
                else:
                    self.records.append((i, ledger.encode("rejected", self.attempt, rejected.reason)))
                    self.summary["rejected"] += 1
            else:
                missing.append(i)
        self.records += zip(sent_at, ledger.encode_sent(self.attempt, sent_ids), strict=True)
        self.summary["accepted"] += len(sent_at)
        self._mark_unknown(missing, self.attempt, "missing from Instasent's answer")
        return len(missing)

    def _mark_unknown(self, indexes: Sequence[int], attempts: int, reason: str) -> None:
        """Record messages whose outcome is unknown (those already unknown keep their record)."""
        fresh = [i for i in indexes if i not in self.unknown]
        self.records += [(i, ledger.encode("unknown", attempts, reason)) for i in fresh]
        self.unknown |= set(indexes)
        self.summary["unknown"] += len(fresh)

    # -- errors ---------------------------------------------------------------------------------
    def _on_error(self, exc: DispatcherError, posted: bool) -> BatchOutcome:
        error = str(exc)
        if isinstance(exc, InsufficientFunds):
            outcome = self._finish(Action.PAUSED, otherwise=self._pending_state(), error=error, posted=posted)
            self._set_state(State.PAUSED, "insufficient_funds")
            # The balance is the organization's: its other campaigns stop too (others go on).
            pause_organization(self.context.store, self.context.account, self.context.organization,
                               "insufficient_funds", skip=self.campaign_id)
            return outcome
        if isinstance(exc, AuthenticationFailed):
            outcome = self._finish(Action.FAILED, otherwise=self._pending_state(), error=error, posted=posted)
            self._set_state(State.FAILED, f"configuration error: {error}")
            return outcome
        if exc.maybe_processed:
            self._mark_unknown(self.todo, self.attempt, error)
            return self._retry_or_give_up(error, posted=posted, permanent=isinstance(exc, PermanentError))
        fails = self.claim.fails + 1
        if fails >= self.context.settings.max_attempts or isinstance(exc, PermanentError):
            uncertain = set(self.todo) if self.needs_reconcile else self.unknown
            pending = [i for i in self.todo if i not in uncertain]
            self.records += [(i, ledger.encode("failed", self.attempt, error)) for i in pending]
            self._mark_unknown([i for i in self.todo if i in uncertain], self.attempt, error)
            self.summary["failed"] += len(pending)
            return self._finish(Action.FAILED, otherwise=self._pending_state(), error=error, posted=posted,
                                failed_attempt=True, give_up=True, streak=Streak.FAILED)
        return self._finish(Action.RETRY, otherwise=self._pending_state(), error=error, posted=posted,
                            failed_attempt=True, retry_in=self._backoff(fails))

    def _retry_or_give_up(self, reason: str, *, posted: bool, streak: Streak = Streak.NONE,
                          permanent: bool = False) -> BatchOutcome:
        """Leave unknown messages to be reconciled later, as one failed attempt out of ``max_attempts``."""
        settings = self.context.settings
        fails = self.claim.fails + 1
        give_up = permanent or fails >= settings.max_attempts
        retry = None if give_up else max(settings.reconcile_delay_s, self._backoff(fails))
        return self._finish(Action.UNKNOWN, otherwise=self._pending_state(), error=reason, posted=posted,
                            failed_attempt=True, give_up=give_up, streak=Streak.FAILED if give_up else streak,
                            retry_in=retry)

    def _give_up(self, reason: str) -> BatchOutcome:
        """Mark the messages proven unsent ``failed``: the batch has used all its attempts."""
        self.records += [(i, ledger.encode("failed", self.attempt - 1, reason)) for i in self.todo]
        self.summary["failed"] += len(self.todo)
        return self._finish(Action.FAILED, otherwise=self._pending_state(), error=reason, give_up=True)

    def _lease_lost(self, lost: LeaseLost) -> BatchOutcome:
        """Stop without POSTing: keep what is known; a stale holder's record keeps only terminal records."""
        if lost.stale:
            return self._finish(Action.STALE, otherwise=self._pending_state(), posted=self.posted)
        return self._finish(Action.RETRY, otherwise=self._pending_state(), error=str(lost), posted=self.posted,
                            retry_in=0.1)

    def _pending_state(self) -> BatchState:
        """Batch state when this attempt leaves messages unfinished: unknown ones need reconciling."""
        return BatchState.UNKNOWN if self.needs_reconcile or self.unknown else BatchState.PENDING

    def _backoff(self, fails: int) -> float:
        return backoff(fails, self.context.settings.retry_backoff_s, self.context.settings.retry_backoff_max_s)

    def _set_state(self, target: State, reason: str) -> None:
        # Another worker may already have moved it (paused, cancelled): nothing more to do then.
        with contextlib.suppress(DispatcherError):
            self.context.store.transition(self.campaign_id, target, reason)

    def _finish(self, action: Action, *, otherwise: BatchState, error: str = "", posted: bool = False,
                failed_attempt: bool = False, give_up: bool = False, streak: Streak = Streak.NONE,
                retry_in: float | None = None) -> BatchOutcome:
        recorded = self.context.ops.record(
            self.campaign_id, self.n, self.records, token=self.claim.token, otherwise=otherwise, error=error,
            posted=posted, failed_attempt=failed_attempt, give_up=give_up, streak=streak,
            max_consecutive_failures=self.context.settings.max_consecutive_failures,
        )
        if recorded.stale:
            # Another worker claimed the batch meanwhile: it decides what happens next.
            action, retry_in = Action.STALE, None
        elif recorded.batch_state == BatchState.DONE:
            retry_in = None
        self.summary["action"] = action.value
        if error:
            self.summary["error"] = error[:200]
        return BatchOutcome(action, retry_in=retry_in, enqueue=list(recorded.reserved), summary=self.summary,
                            campaign_state=recorded.campaign_state)
