"""An answer too large, endless or cut short is refused as "may have been processed", with nothing
read past the cap, and its connection is never used again (``dispatcher.instasent.transport``)."""

from __future__ import annotations

import gzip
import socket
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable

import pytest

from dispatcher.errors import DispatcherError, OutcomeUnknown
from dispatcher.instasent.client import InstasentClient
from dispatcher.instasent.transport import MAX_BODY_BYTES
from tests.instasent.conftest import Conversation, RawServer, read_request
from tests.instasent.test_transport import CANARY, EMPTY, assert_no_token, bulk, soon

Start = Callable[[Conversation], RawServer]
MB = 1024 * 1024


class Sent:
    """Bytes a server managed to hand to its socket, by connection."""

    def __init__(self) -> None:
        self.bytes: dict[int, int] = {}
        self.done = threading.Event()

    def pour(self, conn: socket.socket, index: int, head: bytes, chunk: Callable[[int], bytes], total: int) -> None:
        """Send ``head``, then ``chunk(i)`` until ``total`` bytes of body went out or the client left."""
        self.bytes[index] = 0
        try:
            conn.sendall(head)
            i = 0
            while self.bytes[index] < total:
                data = chunk(i)
                conn.sendall(data)
                self.bytes[index] += len(data)
                i += 1
        finally:
            self.done.set()


def then_empty(first: Callable[[socket.socket, int], None]) -> Conversation:
    """A conversation that runs ``first`` on the first connection and answers EMPTY on later ones."""
    def converse(conn: socket.socket, index: int) -> None:
        request, _ = read_request(conn)
        if request is None:
            return
        if index == 0:
            first(conn, index)
            return
        while request is not None:
            conn.sendall(EMPTY)
            request, _ = read_request(conn)
    return converse


def refused(client: InstasentClient) -> OutcomeUnknown:
    with pytest.raises(OutcomeUnknown, match="may have been processed") as info:
        client.send_bulk_wire(bulk(1), deadline=soon())
    assert info.value.maybe_processed is True
    assert_no_token(info.value)
    return info.value


BODIES = {
    "50 MB by Content-Length": (b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n" % (50 * MB),
                                lambda i: b"x" * (256 * 1024)),
    "endless chunks": (b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n",
                       lambda i: b"40000\r\n" + b"x" * 0x40000 + b"\r\n"),
    "endless until close": (b"HTTP/1.1 201 Created\r\nConnection: close\r\n\r\n", lambda i: b"x" * (256 * 1024)),
}


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_a_body_over_the_cap_is_refused_without_reading_it_and_its_connection_is_dropped(
        raw_server: Start, body: tuple[bytes, Callable[[int], bytes]]) -> None:
    sent = Sent()
    head, chunk = body
    server = raw_server(then_empty(lambda conn, index: sent.pour(conn, index, head, chunk, 50 * MB)))
    with InstasentClient(token=CANARY, base_url=server.url) as client:
        tracemalloc.start()
        try:
            error = refused(client)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert "RemoteProtocolError" in str(error)
        assert peak < 3 * MB  # the cap and a read or two, not the body
        assert sent.done.wait(5)
        # What the server got out before the client closed: the cap, a read, and the sockets' buffers.
        assert sent.bytes[0] < 20 * MB
        assert client.send_bulk_wire(bulk(1), deadline=soon()).accepted == {}
    assert server.connections == 2


def test_a_body_just_under_the_cap_is_read_whole(raw_server: Start) -> None:
    body = b'{"entities": [], "errors": [], "pad": "' + b"x" * (MAX_BODY_BYTES - 100) + b'"}'
    answer = b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    server = raw_server(then_empty(lambda conn, index: conn.sendall(answer)))
    with InstasentClient(token=CANARY, base_url=server.url) as client:
        assert client.send_bulk_wire(bulk(1), deadline=soon()).accepted == {}


def endless_headers(pause_s: float) -> Callable[[socket.socket, int], None]:
    def answer(conn: socket.socket, index: int) -> None:
        conn.sendall(b"HTTP/1.1 201 Created\r\n")
        line = b"X-Pad: " + b"a" * 1000 + b"\r\n"
        for _ in range(100_000):  # 100 MB at most
            conn.sendall(line)
            if pause_s:
                time.sleep(pause_s)
    return answer


def test_endless_headers_are_refused_as_a_protocol_error_long_before_the_deadline(raw_server: Start) -> None:
    server = raw_server(then_empty(endless_headers(0.0)))
    with InstasentClient(token=CANARY, base_url=server.url) as client:
        started = time.monotonic()
        assert "RemoteProtocolError" in str(refused(client))
        assert time.monotonic() - started < 4
        assert client.send_bulk_wire(bulk(1), deadline=soon()).accepted == {}
    assert server.connections == 2


def test_headers_that_trickle_for_ever_end_by_the_deadline(raw_server: Start) -> None:
    server = raw_server(then_empty(endless_headers(0.01)))
    with InstasentClient(token=CANARY, base_url=server.url) as client:
        started = time.monotonic()
        with pytest.raises(OutcomeUnknown, match="deadline"):
            client.send_bulk_wire(bulk(1), deadline=started + 0.5)
        assert time.monotonic() - started < 0.8
        assert client.send_bulk_wire(bulk(1), deadline=soon()).accepted == {}
    assert server.connections == 2


def test_a_connection_whose_answer_came_after_the_deadline_is_not_reused(raw_server: Start) -> None:
    server = raw_server(then_empty(lambda conn, index: (time.sleep(0.5), conn.sendall(EMPTY))))
    with InstasentClient(token=CANARY, base_url=server.url) as client:
        with pytest.raises(OutcomeUnknown, match="deadline"):
            client.send_bulk_wire(bulk(1), deadline=time.monotonic() + 0.2)
        assert client.send_bulk_wire(bulk(1), deadline=soon()).accepted == {}
    assert server.connections == 2


def test_a_connection_whose_request_failed_part_way_is_not_reused(raw_server: Start) -> None:
    def reset_mid_body(conn: socket.socket, index: int) -> None:
        if index == 0:
            conn.recv(1024)  # the head only, then a reset while the body is still coming
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        request, _ = read_request(conn)
        while request is not None:
            conn.sendall(EMPTY)
            request, _ = read_request(conn)

    server = raw_server(reset_mid_body)
    big = [dict(item, text="a" * 40_000) for item in bulk(100)]  # 4 MB: more than the sockets buffer
    with InstasentClient(token=CANARY, base_url=server.url) as client:
        with pytest.raises(DispatcherError) as info:
            client.send_bulk_wire(big, deadline=soon())
        assert_no_token(info.value)
        assert client.send_bulk_wire(bulk(1), deadline=soon()).accepted == {}
    assert server.connections == 2


def test_bytes_after_a_whole_answer_leave_that_answer_whole_and_retire_its_connection(raw_server: Start) -> None:
    body = b'{"entities": [{"id": "abc", "clientId": "l-0000"}], "errors": []}'
    answer = b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    answered, stray = threading.Event(), threading.Event()

    def late_bytes(conn: socket.socket, index: int) -> None:
        conn.sendall(answer)
        answered.wait(5)  # the client has read the answer: what follows reaches an idle connection
        conn.sendall(b"HTTP/1.1 500 Late\r\n\r\n")
        stray.set()
        conn.recv(65536)

    server = raw_server(then_empty(late_bytes))
    with InstasentClient(token=CANARY, base_url=server.url) as client:
        assert client.send_bulk_wire(bulk(1), deadline=soon()).accepted == {"l-0000": "abc"}
        answered.set()
        assert stray.wait(5)
        assert client.send_bulk_wire(bulk(1), deadline=soon()).accepted == {}
    assert server.connections == 2


def gzip_answer(body: bytes, coding: str = "gzip") -> bytes:
    packed = gzip.compress(body) if coding == "gzip" else zlib.compress(body)
    return b"HTTP/1.1 201 Created\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        coding.encode(), len(packed), packed)


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_a_compressed_answer_the_server_sent_unasked_is_read_when_it_fits(raw_server: Start, coding: str) -> None:
    server = raw_server(then_empty(lambda conn, index: conn.sendall(
        gzip_answer(b'{"entities": [], "errors": []}', coding))))
    with InstasentClient(token=CANARY, base_url=server.url) as client:
        assert client.send_bulk_wire(bulk(1), deadline=soon()).accepted == {}


def test_a_compressed_answer_that_inflates_past_the_cap_is_refused_without_inflating_it(raw_server: Start) -> None:
    bomb = gzip_answer(b"\0" * (200 * MB))  # about 200 KB on the wire
    server = raw_server(then_empty(lambda conn, index: conn.sendall(bomb)))
    with InstasentClient(token=CANARY, base_url=server.url) as client:
        tracemalloc.start()
        try:
            error = refused(client)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert "RemoteProtocolError" in str(error)
        assert peak < 5 * MB


def test_an_answer_in_an_encoding_the_client_cannot_read_is_refused(raw_server: Start) -> None:
    answer = b"HTTP/1.1 201 Created\r\nContent-Encoding: br\r\nContent-Length: 4\r\n\r\n\x0b\x01\x80\x03"
    server = raw_server(then_empty(lambda conn, index: conn.sendall(answer)))
    with InstasentClient(token=CANARY, base_url=server.url) as client:
        assert "RemoteProtocolError" in str(refused(client))
