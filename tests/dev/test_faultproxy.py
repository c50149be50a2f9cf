"""The fault proxy's answer drop: the server gets the whole request, the client part of the answer
and then the end of the connection (real sockets on loopback)."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

from dispatcher.dev.faultproxy import FaultProxy

ANSWER = b"x" * 1000


class Answering(socketserver.BaseRequestHandler):
    """Answers each line it reads with :data:`ANSWER`, and counts the lines."""

    seen: ClassVar[list[bytes]] = []

    def handle(self) -> None:
        with self.request.makefile("rb") as lines:
            for line in lines:
                Answering.seen.append(line)
                self.request.sendall(ANSWER)


@pytest.fixture()
def server() -> Iterator[int]:
    Answering.seen = []
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Answering) as tcp:
        tcp.daemon_threads = True
        thread = threading.Thread(target=tcp.serve_forever, daemon=True)
        thread.start()
        yield tcp.server_address[1]
        tcp.shutdown()


def ask(port: int) -> bytes:
    """Send one line on a new connection; everything read until the answer is whole or the connection ends."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"hello\n")
        got = b""
        while len(got) < len(ANSWER):
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
        return got


def test_every_second_answer_is_cut_after_its_first_bytes_while_the_server_got_every_request(server: int) -> None:
    with FaultProxy("127.0.0.1", server) as proxy:
        proxy.answer_drop_every, proxy.answer_drop_after = 2, 100
        answers = [ask(proxy.port) for _ in range(4)]
    assert [len(a) for a in answers] == [1000, 100, 1000, 100]
    assert proxy.dropped == 2
    assert len(Answering.seen) == 4  # each request reached the server, the dropped ones too
