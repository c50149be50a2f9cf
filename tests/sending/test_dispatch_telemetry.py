"""A worker's HTTP client counts every bulk answer, and only those, in the process's telemetry
(``tasks.dispatch._count_bulk_answer``)."""

from __future__ import annotations

import time

import pytest

import tasks.dispatch as dispatch
from dispatcher.errors import OutcomeUnknown
from dispatcher.instasent.models import wire_item
from dispatcher.sending.pump import TimedClient
from dispatcher.settings import Settings
from tests.helpers import SandboxHandle


class Counts:
    def __init__(self) -> None:
        self.statuses: list[int] = []

    def bulk_answered(self, status: int) -> None:
        self.statuses.append(status)


def test_bulk_answers_are_counted_by_status_and_other_answers_are_not(
        settings: Settings, sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    counts = Counts()
    monkeypatch.setattr(dispatch, "telemetry", lambda: counts)
    items = [wire_item("Acme", "+34600000100", "Hola", "c-1")]
    with TimedClient(token=settings.instasent_token, base_url=settings.instasent_base_url) as client:
        client.on_answer(dispatch._count_bulk_answer)
        client.send_bulk_wire(items, deadline=time.monotonic() + 5)
        client.account()
        sandbox.faults(error_rate=1.0)
        with pytest.raises(OutcomeUnknown, match="500"):
            client.send_bulk_wire(items, deadline=time.monotonic() + 5)
    assert counts.statuses == [201, 500]
