"""A request with a deadline ends by it over a real socket, on the calling thread, however slowly
the server answers (``dispatcher.instasent.deadline``)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from dispatcher.errors import OutcomeUnknown
from dispatcher.instasent import deadline
from dispatcher.instasent.client import InstasentClient
from dispatcher.instasent.models import SmsItem

ITEM = SmsItem(sender="A", to="+34600000000", text="x", client_id="c-0-0")


@pytest.fixture
def trickling_server() -> Iterator[str]:
    """An HTTP server that answers every request one byte every 50 ms (each read is quick, the whole is not)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n")
                for _ in range(400):
                    if stop.is_set():
                        return
                    try:
                        conn.sendall(b" ")
                    except OSError:
                        break
                    time.sleep(0.05)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5)
    listener.close()


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
