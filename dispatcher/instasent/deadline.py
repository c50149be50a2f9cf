"""Bound a whole HTTP exchange by one deadline, on the thread that makes it.

httpx's timeouts bound each socket operation, not the exchange: a server that keeps answering a
few bytes at a time could hold a request open for ever. :class:`DeadlineBackend` is an httpcore
network backend (given to the pool of :class:`~dispatcher.instasent.transport.InstasentTransport`)
whose every socket operation (connect, TLS handshake, each write, each read) is given at most the
time left until the deadline the calling thread set with :func:`bounded`, and fails at once when
none is left. Every operation then ends by the deadline, and so does the exchange.
"""

from __future__ import annotations

import threading
import time
import typing
from collections.abc import Iterator
from contextlib import contextmanager

import httpcore

_local = threading.local()


@contextmanager
def bounded(deadline: float | None) -> Iterator[None]:
    """Let every socket operation of this thread's requests end by ``deadline`` (``time.monotonic()``;
    None: no deadline)."""
    _local.deadline = deadline
    try:
        yield
    finally:
        _local.deadline = None


def cut(timeout: float | None, deadline: float | None, expired: type[Exception]) -> float | None:
    """``timeout`` (seconds, None: none) cut to the time left before ``deadline`` (``time.monotonic()``,
    None: none).

    Raises:
        expired: when no time is left.
    """
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the request's deadline has passed")
    return left if timeout is None else min(timeout, left)


def _left(timeout: float | None, expired: type[Exception]) -> float | None:
    """``timeout`` cut to the time left before this thread's deadline (see :func:`cut`)."""
    return cut(timeout, getattr(_local, "deadline", None), expired)


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation ends by the calling thread's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: typing.Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        stream = self._inner.start_tls(ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout))
        return DeadlineStream(stream)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """A network backend whose connections end every operation by the calling thread's deadline."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: typing.Iterable[typing.Any] | None = None) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, _left(timeout, httpcore.ConnectTimeout), local_address,
                                         socket_options)
        return self._checked(stream)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: typing.Iterable[typing.Any] | None = None) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(path, _left(timeout, httpcore.ConnectTimeout), socket_options)
        return self._checked(stream)

    def _checked(self, stream: httpcore.NetworkStream) -> httpcore.NetworkStream:
        # Name resolution is not bounded by a socket timeout: a connection made after the deadline
        # is closed before anything is written on it.
        try:
            _left(None, httpcore.ConnectTimeout)
        except httpcore.ConnectTimeout:
            stream.close()
            raise
        return DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)
