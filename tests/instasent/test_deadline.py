"""A request with a deadline ends by it over a real socket, on the calling thread, however slowly
the server answers (``dispatcher.instasent.deadline`` under ``dispatcher.instasent.transport``)."""

from __future__ import annotations

import ssl
import threading
import time

import httpx
import pytest

from dispatcher.errors import OutcomeUnknown
from dispatcher.instasent.client import InstasentClient
from dispatcher.instasent.models import SmsItem
from dispatcher.instasent.transport import InstasentTransport

ITEM = SmsItem(sender="A", to="+34600000000", text="x", client_id="c-0-0")


def test_a_post_over_a_socket_ends_by_its_deadline_on_the_calling_thread(trickling_server: str) -> None:
    client = InstasentClient(token="t", base_url=trickling_server, timeout=httpx.Timeout(30.0, connect=5.0))
    threads = threading.active_count()
    started = time.monotonic()
    with pytest.raises(OutcomeUnknown, match="deadline"):
        client.send_bulk([ITEM], deadline=started + 0.4)
    assert time.monotonic() - started < 0.6
    assert threading.active_count() == threads  # no helper thread
    client.close()


def test_a_request_without_time_left_fails_before_connecting() -> None:
    transport = InstasentTransport(ssl_context=ssl.create_default_context(), max_connections=1)
    # A pool timeout: refused before a connection is even chosen (port 9 would refuse a connect).
    with httpx.Client(transport=transport) as client, pytest.raises(httpx.PoolTimeout, match="deadline"):
        client.get("http://127.0.0.1:9/", extensions={"deadline": time.monotonic() - 1})
