"""Raw HTTP servers on loopback sockets, for what the sandbox cannot do: answer slowly byte by
byte, answer a canned response, drop a connection part-way."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator

import pytest

#: What a canned server answers to one raw request (head and body): the bytes to send, or None to
#: close the connection without answering.
Answerer = Callable[[bytes], bytes | None]


def http_answer(status: int, body: bytes, *headers: str) -> bytes:
    """A whole HTTP/1.1 response with ``Content-Length``."""
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class CannedServer:
    """An HTTP/1.1 server on a loopback socket answering every request with ``answer(request)``,
    keeping each connection open for the next request. It counts connections and keeps the raw
    requests it read."""

    def __init__(self, answer: Answerer, tls: ssl.SSLContext | None = None, keep_open: bool = True) -> None:
        self.answer = answer
        #: Serve TLS with this context; close each connection after one answer unless ``keep_open``.
        self.tls, self.keep_open = tls, keep_open
        self.connections = 0
        self.requests: list[bytes] = []
        #: Released each time the server has closed a connection.
        self.ended = threading.Semaphore(0)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self._listener.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self._converse, args=(conn,), daemon=True).start()

    def _converse(self, conn: socket.socket) -> None:
        try:
            self._answer_all(conn)
        finally:
            self.ended.release()

    def _answer_all(self, conn: socket.socket) -> None:
        if self.tls is not None:
            try:
                conn.settimeout(5)
                conn = self.tls.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):  # a client that refused our certificate
                conn.close()
                return
        with conn:
            conn.settimeout(5)
            buffer = b""
            while not self._stop.is_set():
                request, buffer = _read_request(conn, buffer)
                if request is None:
                    return
                self.requests.append(request)
                reply = self.answer(request)
                if reply is None:
                    return
                try:
                    conn.sendall(reply)
                except OSError:
                    return
                if not self.keep_open:
                    return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()


def _read_request(conn: socket.socket, buffer: bytes) -> tuple[bytes | None, bytes]:
    """One request (head and body, by its ``Content-Length``) and what was read past it; None at
    the end of the connection."""
    try:
        while b"\r\n\r\n" not in buffer:
            chunk = conn.recv(65536)
            if not chunk:
                return None, b""
            buffer += chunk
        head, _, rest = buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None, b""
            rest += chunk
    except OSError:
        return None, b""
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


@pytest.fixture
def canned_server() -> Iterator[Callable[[Answerer], CannedServer]]:
    """Start canned servers (see :class:`CannedServer`), closed after the test."""
    started: list[CannedServer] = []

    def start(answer: Answerer, tls: ssl.SSLContext | None = None, keep_open: bool = True) -> CannedServer:
        server = CannedServer(answer, tls, keep_open)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


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


#: What a raw server does with one accepted connection (the socket, and its 0-based count).
Conversation = Callable[[socket.socket, int], None]


class RawServer:
    """A TCP server on loopback handing each accepted connection to ``converse`` on a thread of its
    own (closed after), counting connections."""

    def __init__(self, converse: Conversation) -> None:
        self.converse = converse
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self._run, args=(conn, self.connections - 1), daemon=True).start()

    def _run(self, conn: socket.socket, index: int) -> None:
        with conn, contextlib.suppress(OSError):  # the client left: nothing to tell it
            self.converse(conn, index)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[[Conversation], RawServer]]:
    """Start raw servers (see :class:`RawServer`), closed after the test."""
    started: list[RawServer] = []

    def start(converse: Conversation) -> RawServer:
        started.append(RawServer(converse))
        return started[-1]

    yield start
    for server in started:
        server.close()


def read_request(conn: socket.socket, buffer: bytes = b"") -> tuple[bytes | None, bytes]:
    """One whole request read from ``conn`` and what was read past it (None at the end of the connection)."""
    conn.settimeout(5)
    return _read_request(conn, buffer)
