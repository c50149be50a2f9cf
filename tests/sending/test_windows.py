"""Send windows and expiry, with an injected clock: no waiting for real hours."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pandas as pd
import pytest

from bench.whole_list import submit_prepared
from dispatcher.errors import InputError
from dispatcher.sending import campaigns
from dispatcher.sending.context import SendContext
from dispatcher.sending.windows import Window, is_open, next_open, parse_days, parse_duration, parse_window, zones_for
from tests.fakes import FakeInstasent
from tests.helpers import Clock, Queue

MADRID = "+34612345678"  # Europe/Madrid and Atlantic/Canary
NEW_YORK = "+12015550123"  # America/New_York
TOKYO = "+819012345678"  # Asia/Tokyo


def three_zones(per_zone: int = 150) -> pd.DataFrame:
    numbers = [p[:-3] + f"{i:03d}" for i in range(per_zone) for p in (MADRID, NEW_YORK, TOKYO)]
    n = len(numbers)
    return pd.DataFrame({"row": range(2, n + 2), "to": numbers, "text": ["hola"] * n, "sender": ["ACME"] * n,
                         "parts": [1] * n, "unicode": [False] * n, "price": [0.05] * n, "country": ["XX"] * n})


@pytest.fixture()
def clock(sender: SendContext) -> Clock:
    clock = Clock()
    sender.clock = clock
    return clock


def test_three_time_zones_are_released_in_order_and_never_outside_their_window(
        sender: SendContext, fake: FakeInstasent, clock: Clock) -> None:
    window = parse_window("09:00-21:00", "mon-fri")
    queue, log = Queue(), []
    cid = submit_prepared(sender.store, sender.ops, queue, sender.settings, name="w", messages=three_zones(),
                          send_window=window, now=clock())
    queue.drain(sender, log, fake)  # 03:00 UTC: only Tokyo (12:00) is open
    info = sender.store.get(cid)
    assert info.counts["sent"] == 150 and info.waiting == 300
    assert sender.store.next_window_opening(cid) == datetime(2026, 11, 23, 9, tzinfo=UTC).timestamp()
    for hour, expected_sent in ((8, 150), (9, 300), (13, 300), (14, 450)):
        clock.at(hour)
        campaigns.release_parked(sender.ops, queue, now=clock())
        queue.drain(sender, log, fake)
        assert sender.store.get(cid).counts["sent"] == expected_sent, hour
    info = sender.store.get(cid)
    assert info.state == "completed" and info.waiting == 0
    first_sent = {}
    for when, client_id in sorted(log):
        to = next(m for _, ms, _ in sender.store.iter_batches(cid) for i, m in enumerate(ms.to)
                  if ms.client_id(cid, i) == client_id)
        assert is_open(window, zones_for(to), datetime.fromtimestamp(when, UTC)), (to, when)
        first_sent.setdefault(to[:4], when)
    assert first_sent["+819"] < first_sent["+346"] < first_sent["+120"]


def test_parked_batches_do_not_hold_the_queue_window(sender: SendContext, fake: FakeInstasent, clock: Clock) -> None:
    sender.settings = sender.settings.with_overrides(queue_window=1)
    queue, log = Queue(), []
    cid = submit_prepared(sender.store, sender.ops, queue, sender.settings, name="w",
                          messages=three_zones(250), send_window=parse_window("09:00-21:00"), now=clock())
    queue.drain(sender, log, fake)
    assert sender.store.get(cid).counts["sent"] == 250  # Tokyo's three batches went despite a window of 1


def test_expiry_marks_what_is_unsent_expired(sender: SendContext, fake: FakeInstasent, clock: Clock) -> None:
    queue, log = Queue(), []
    cid = submit_prepared(sender.store, sender.ops, queue, sender.settings, name="w", messages=three_zones(),
                          send_window=parse_window("09:00-21:00"), expire_after_s=parse_duration("2h"),
                          now=clock())
    queue.drain(sender, log, fake)
    clock.at(5, 1)
    assert campaigns.release_parked(sender.ops, queue, now=clock()) == 4
    queue.drain(sender, log, fake)
    info = sender.store.get(cid)
    assert (info.counts["sent"], info.counts["expired"], info.state) == (150, 300, "completed")


def test_a_window_that_wraps_midnight_contains_the_small_hours() -> None:
    night = Window(time(22), time(6))
    tz = ("Europe/Madrid",)
    assert is_open(night, tz, datetime(2026, 11, 23, 2, tzinfo=UTC))
    assert not is_open(night, tz, datetime(2026, 11, 23, 12, tzinfo=UTC))


def test_zones_that_never_share_an_open_hour_have_no_opening() -> None:
    narrow = parse_window("09:00-10:00")
    assert next_open(narrow, ("Asia/Tokyo", "America/New_York"), datetime(2026, 11, 23, tzinfo=UTC)) is None


@pytest.mark.parametrize(("spec", "days"),
                         [("mon-fri", {0, 1, 2, 3, 4}), ("sat,sun", {5, 6}), ("fri-mon", {4, 5, 6, 0})])
def test_days_parse_ranges_lists_and_wraps(spec: str, days: set[int]) -> None:
    assert parse_days(spec) == days


@pytest.mark.parametrize("bad", ["9-21", "25:00-26:00", "09:00-09:00"])
def test_a_malformed_window_is_an_input_error(bad: str) -> None:
    with pytest.raises(InputError):
        parse_window(bad)


def test_durations_take_seconds_minutes_hours_and_days() -> None:
    assert [parse_duration(s) for s in ("90s", "30m", "6h", "2d")] == [90, 1800, 21600, 172800]
    with pytest.raises(InputError):
        parse_duration("soon")


def test_cancelling_a_campaign_clears_what_waited_for_its_window(
        sender: SendContext, fake: FakeInstasent, clock: Clock) -> None:
    queue, log = Queue(), []
    cid = submit_prepared(sender.store, sender.ops, queue, sender.settings, name="w", messages=three_zones(),
                          send_window=parse_window("09:00-21:00"), now=clock())
    queue.drain(sender, log, fake)
    assert sender.store.get(cid).waiting == 300
    campaigns.cancel(sender.store, sender.ops, cid, ttl_s=60)
    info = sender.store.get(cid)
    assert (info.waiting, info.counts["cancelled"], info.counts["sent"]) == (0, 300, 150)
    clock.at(15)
    campaigns.release_parked(sender.ops, queue, now=clock())
    queue.drain(sender, log, fake)
    assert sender.store.get(cid).counts["sent"] == 150
