"""Small things of issue 22: housekeeping out of Flower's task list, a readable rate in ``status``."""

from __future__ import annotations

import time

from dispatcher.schema.names import State
from dispatcher.screens import both_zones, out, print_status
from dispatcher.sending.store import CampaignInfo


def test_the_release_windows_task_sends_no_task_events_and_campaign_tasks_do() -> None:
    import tasks.dispatch
    import tasks.schedules

    assert tasks.schedules.release_windows.send_events is False
    assert tasks.dispatch.send_batch_task.send_events is True and tasks.schedules.fire_schedule.send_events is True


def info(started: float, finished: float) -> CampaignInfo:
    return CampaignInfo(id="abc", name="x", state=State.COMPLETED, reason="", total=2703, batches=28, enqueued=28,
                        settled=28, counts={"pending": 0, "sent": 2703}, created_at=started, started_at=started,
                        finished_at=finished, updated_at=finished, cost=121.635, currency="EUR",
                        options={"text": "Hola {name}", "sender": "ACME"})


def test_status_never_divides_by_a_blink_and_shows_text_sender_and_cost_in_the_currencys_exponent() -> None:
    now = time.time()
    with out.capture() as fast:
        print_status(info(now - 0.01, now))
    assert "in under a second" in fast.get() and "messages/s" not in fast.get()
    assert "Hola {name}" in fast.get() and "ACME" in fast.get() and "121.64 EUR" in fast.get()
    with out.capture() as slow:
        print_status(info(now - 10, now))
    assert "270 messages/s over 10 s" in slow.get()


def test_a_time_is_shown_in_the_recipients_zone_and_this_machines_each_named() -> None:
    shown = both_zones(1796630400.0, "Europe/Madrid")  # 2026-12-07 09:00 in Madrid
    assert shown.startswith("2026-12-07 09:00 Europe/Madrid") and "here" in shown
