"""Why a campaign is not moving, and when it should finish: the ``waiting_for`` and
``estimated_finish`` objects that the API, ``dispatcher status`` and the list all show.

``waiting_for`` is one reason, the first that holds in this order: no worker runs; the campaign
is paused (by whom and when); it stopped because the balance ran out; the bulk lane is paused by
Instasent's rate limit (until when); its batches wait for their send window (when it opens, in the
recipients' zone); its schedule held it behind the previous run, or skipped a firing because of
it. Otherwise the kind is ``none``. Times are Unix seconds with ISO 8601 beside them, in the zone
named (the recipients' zone for a window, UTC otherwise); a viewer's own zone is the front's to add.

The estimated finish divides what is left by a pace: the campaign's own recent pace when the
console's samples have one, else its share of the lane's limit (the limit over the campaigns
sending now), and lays that sending time over the send window's open hours, five minutes at a
time, for at most eight days.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from dispatcher.instasent.wire import SMS_BULK
from dispatcher.schema.names import SENDING, State
from dispatcher.sending.health import campaign_health
from dispatcher.sending.pace import lane_limit, pace_per_s, read_series
from dispatcher.sending.store import CampaignInfo, CampaignStore
from dispatcher.sending.windows import HORIZON, is_open, next_open
from dispatcher.settings import Settings

#: The kinds of ``waiting_for``, in the order they are looked for.
KINDS = ("no_worker", "paused", "balance", "rate_limited", "window", "schedule_queued", "schedule_skipped", "none")
#: Reasons of a pause that the dispatcher made for lack of money.
BALANCE_REASONS = frozenset({"insufficient_funds"})
#: Seconds of a step when laying the sending time over the window's open hours.
STEP_S = 300.0
#: Samples (seconds, one a second) the measured pace is taken over.
PACE_SAMPLES = 30


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def iso(ts: float | None, zone: str | None = "UTC") -> str | None:
    """``ts`` (Unix s) as ISO 8601 in ``zone`` (to the second); None for None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, _zone(zone)).isoformat(timespec="seconds")


def spoken(ts: float, zone: str | None) -> str:
    """``ts`` for a sentence: ``09:00 Mon 7 Dec (Europe/Madrid)``."""
    local = datetime.fromtimestamp(ts, _zone(zone))
    return f"{local:%H:%M} {local:%a} {local.day} {local:%b} ({zone or 'UTC'})"


def _parked_zones(store: CampaignStore, campaign_id: str) -> tuple[float | None, tuple[str, ...]]:
    """When the campaign's first parked batch is released, and that batch's time zones."""
    first = store.redis.zrange(store.keys.parked_in(campaign_id), 0, 0, withscores=True)
    if not first:
        return None, ()
    member, at = first[0]
    number = member.decode().rsplit(":", 1)[-1]
    zones = b""
    if number.isdigit():
        zones = store.redis.hget(store.keys.batch(campaign_id, int(number)), "tz") or b""
    return float(at), tuple(z for z in zones.decode().split(",") if z)


def _last_event(store: CampaignStore, campaign_id: str, kind: str) -> dict[str, Any] | None:
    for raw in reversed(store.redis.lrange(store.keys.campaign_events(campaign_id), -50, -1)):
        event = orjson.loads(raw)
        if event.get("kind") == kind:
            return dict(event)
    return None


def _lane_paused_until(store: CampaignStore, info: CampaignInfo) -> float | None:
    """Until when (Unix s) the bulk lane of the campaign's organization is paused, or None."""
    raw = store.redis.get(store.keys.lane_pause(store.keys.lane(info.organization, SMS_BULK)))
    if raw is None:
        return None
    until = int(raw) / 1_000_000
    return until if until > time.time() else None


def _schedule_note(store: CampaignStore, info: CampaignInfo) -> dict[str, Any] | None:
    """The newest firing of the campaign's schedule that held or skipped because of it, or None."""
    if not info.schedule:
        return None
    for raw in store.redis.lrange(store.keys.schedule_runs(info.schedule), 0, 9):
        firing = orjson.loads(raw)
        if firing.get("campaign") == info.id and firing.get("outcome") in ("waiting", "skipped"):
            return dict(firing)
    return None


def waiting_for(store: CampaignStore, info: CampaignInfo, health: dict[str, Any] | None = None,
                now: float | None = None) -> dict[str, Any]:
    """What campaign ``info`` waits for: ``kind`` (one of :data:`KINDS`), ``sentence``, and the data
    behind it (``at`` Unix s, ``at_iso`` in ``zone``, ``by``, ``reason``, ``schedule``, ``workers``).

    ``health`` is :func:`dispatcher.sending.health.campaign_health`'s answer when already read.
    """
    now = time.time() if now is None else now
    health = campaign_health(store, info) if health is None else health
    answer: dict[str, Any] = {"kind": "none", "sentence": "", "at": None, "at_iso": None, "zone": None, "by": None,
                              "reason": None, "schedule": info.schedule or None, "workers": health["workers"]}
    state = info.state
    if health.get("no_worker"):
        answer.update(kind="no_worker", sentence="Waiting for a worker: none is running, so nothing is sent "
                                                 "(start one with `dispatcher worker`).")
        return answer
    if state == State.PAUSED:
        event = _last_event(store, info.id, "paused")
        at = float(event["at"]) if event else info.updated_at
        if info.reason in BALANCE_REASONS:
            answer.update(kind="balance", at=at, at_iso=iso(at), zone="UTC", by="dispatcher", reason=info.reason,
                          sentence="Paused: the Instasent balance ran out. Top it up, then resume the campaign.")
            return answer
        by = str(event["by"]) if event and event.get("by") else ("dispatcher" if info.reason not in
                                                                   ("", "paused by user") else "someone")
        when = f" at {spoken(at, 'UTC')}" if at else ""
        why = f" ({info.reason})" if info.reason and info.reason != "paused by user" else ""
        answer.update(kind="paused", at=at, at_iso=iso(at), zone="UTC", by=by, reason=info.reason or None,
                      sentence=f"Paused by {by}{when}{why}: resume it to send the rest.")
        return answer
    if state == State.FAILED and info.reason in BALANCE_REASONS:
        answer.update(kind="balance", at=info.updated_at, at_iso=iso(info.updated_at), zone="UTC",
                      by="dispatcher", reason=info.reason,
                      sentence="Stopped: the Instasent balance ran out. Top it up, then resume the campaign.")
        return answer
    if state not in SENDING:
        return answer
    unsettled = info.pending + info.counts.get("unknown", 0)
    until = _lane_paused_until(store, info)
    if until is not None and unsettled > info.waiting:
        answer.update(kind="rate_limited", at=until, at_iso=iso(until), zone="UTC",
                      sentence=f"Rate-limited by Instasent: sending resumes at {spoken(until, 'UTC')}.")
        return answer
    opens, zones = _parked_zones(store, info.id)
    if info.waiting and opens is not None and unsettled <= info.waiting:
        zone = zones[0] if zones else "UTC"
        answer.update(kind="window", at=opens, at_iso=iso(opens, zone), zone=zone,
                      sentence=f"Waiting for its send window: it opens at {spoken(opens, zone)} for the "
                               f"recipients ({info.waiting:,} messages wait).")
        return answer
    note = _schedule_note(store, info)
    if note is not None and note.get("outcome") == "waiting" and not info.started_at:
        answer.update(kind="schedule_queued", at=note.get("at"), at_iso=iso(note.get("at")), zone="UTC",
                      reason=note.get("reason") or None,
                      sentence=f"Held by schedule {info.schedule}: "
                               f"{note.get('reason') or 'the previous run still sends'}.")
        return answer
    if note is not None and note.get("outcome") == "skipped":
        answer.update(kind="schedule_skipped", at=note.get("at"), at_iso=iso(note.get("at")), zone="UTC",
                      reason=note.get("reason") or None,
                      sentence=f"Schedule {info.schedule} skipped a firing at {spoken(float(note['at']), 'UTC')} "
                               f"because this campaign still sends.")
        # Not a stop: the campaign itself is moving; the note says why the schedule did nothing.
        return answer
    return answer


def estimated_finish(store: CampaignStore, info: CampaignInfo, settings: Settings, waiting: dict[str, Any],
                     now: float | None = None) -> dict[str, Any] | None:
    """When campaign ``info`` should be done: ``at`` (Unix s), ``at_iso`` and ``zone``, the
    ``pace_per_s`` used and its ``basis`` (``pace`` measured, or ``share`` of the lane); None when
    it is final, stopped, waits for a worker, or has no pace to go by."""
    now = time.time() if now is None else now
    if info.state not in SENDING or waiting["kind"] in ("no_worker", "paused", "balance", "schedule_queued"):
        return None
    left = info.pending + info.counts.get("unknown", 0)
    if left <= 0:
        return None
    measured = pace_per_s(read_series(store, info.id, last=PACE_SAMPLES))
    basis = "pace"
    pace = measured
    if pace <= 0:
        limit, _ = lane_limit(store, settings)
        sending = sum(1 for c in store.recent(100) if c.state in SENDING and c.pending > c.waiting) or 1
        pace, basis = limit / sending, "share"
    if pace <= 0:
        return None
    start = now
    if waiting["kind"] == "rate_limited" and waiting["at"]:
        start = float(waiting["at"])
    needed = left / pace
    zone = "UTC"
    at: float | None = start + needed
    if info.send_window is not None:
        opens, zones = _parked_zones(store, info.id)
        zones = zones or ("UTC",)
        zone = zones[0]
        at = _over_window(info, zones, max(start, opens or start), needed)
    if at is None:
        return None
    return {"at": at, "at_iso": iso(at, zone), "zone": zone, "pace_per_s": round(pace, 3), "basis": basis}


def _over_window(info: CampaignInfo, zones: tuple[str, ...], start: float, needed_s: float) -> float | None:
    """When ``needed_s`` seconds of sending inside the campaign's window, from ``start``, are done."""
    assert info.send_window is not None
    t, left = start, needed_s
    end = start + HORIZON.total_seconds()
    while t < end:
        step = min(STEP_S, left)
        grid = step if step > 0 else STEP_S
        if is_open(info.send_window, zones, datetime.fromtimestamp(t, UTC)):
            left -= step
            if left <= 0:
                return t + step
            t += grid
            continue
        # Closed: go straight to the first step at or after the next opening. A step is as short as
        # the time left (microseconds for a few messages at a high rate), so walking a closed night
        # step by step took minutes of CPU.
        opens = next_open(info.send_window, zones, datetime.fromtimestamp(t, UTC))
        if opens is None:
            return None
        t += max(1, math.ceil((opens.timestamp() - t) / grid)) * grid
    return None
