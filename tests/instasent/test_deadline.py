"""A request with a deadline ends by it over a real socket, on the calling thread, however slowly
the server answers (``dispatcher.instasent.deadline``)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from dispatcher.errors import OutcomeUnknown
from dispatcher.instasent import deadline
from dispatcher.instasent.client import InstasentClient
from dispatcher.instasent.models import SmsItem

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
    with deadline.bounded(time.monotonic() - 1), pytest.raises(httpx.ConnectTimeout):
        client = httpx.Client()
        assert deadline.install(client)
        client.get("http://127.0.0.1:9/")


def test_a_client_on_a_mock_transport_is_left_to_the_helper_thread() -> None:
    client = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200)))
    assert not deadline.install(client)
