"""A small TCP fault proxy for tests: put it between a process and a server (Redis, the sandbox)
to add latency, to cut the link (every live connection closed, new ones refused) and heal it, or
to drop connections in the middle of the server's answer (the request has reached the server,
which acted on it; the client sees part of the answer, then the connection reset).

It runs its own asyncio loop in a daemon thread of the calling process::

    with FaultProxy("127.0.0.1", 6379) as proxy:
        proxy.latency_s = 0.001          # each chunk, each way
        env["REDIS_URL"] = f"redis://127.0.0.1:{proxy.port}/0"
        ...
        proxy.cut(); time.sleep(8); proxy.heal()
        proxy.answer_drop_every = 5      # every fifth chunk from the server: cut after a few bytes
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from dispatcher.dev.services import free_port

#: Bytes read at once from either side.
CHUNK = 65536


class FaultProxy:
    """Forwards ``127.0.0.1:port`` to ``host:target_port`` with the faults it is told to add."""

    def __init__(self, host: str, target_port: int, port: int | None = None) -> None:
        self.host, self.target_port = host, target_port
        self.port = port or free_port()
        #: Seconds each chunk waits before it is forwarded, in each direction.
        self.latency_s = 0.0
        #: Every this many chunks from the server (0: never), the proxy forwards only the first
        #: :attr:`answer_drop_after` bytes of the chunk (never all of it) and then resets both
        #: connections: an answer dropped midway. Counted over all connections, so it is exact.
        self.answer_drop_every = 0
        #: Bytes of a dropped chunk still forwarded before the reset.
        self.answer_drop_after = 64
        #: Answers dropped so far.
        self.dropped = 0
        self._answer_chunks = 0
        self._cut = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._server: asyncio.AbstractServer | None = None

    # -- control (from any thread) ----------------------------------------------------------------
    def start(self) -> FaultProxy:
        """Start listening; returns self."""
        self._thread.start()
        self._ready.wait(10)
        return self

    def cut(self) -> None:
        """Close every live connection and refuse new ones until :meth:`heal`."""
        self._cut = True
        self._loop.call_soon_threadsafe(self._close_all)

    def heal(self) -> None:
        """Accept and forward connections again."""
        self._cut = False

    def stop(self) -> None:
        """Stop the proxy and its thread."""
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._shutdown)
            self._thread.join(10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- the loop -------------------------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()
        # Let the connections' tasks see their aborted sockets and end, rather than be destroyed pending.
        pending = asyncio.all_tasks(self._loop)
        if pending:
            self._loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
        self._loop.close()

    def _close_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def _shutdown(self) -> None:
        self._close_all()
        if self._server is not None:
            self._server.close()
        self._loop.stop()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer, None), self._pipe(up_reader, writer, up_writer))
        self._writers -= {writer, up_writer}

    def _drops(self) -> bool:
        """Whether this chunk from the server is the one to drop midway (see :attr:`answer_drop_every`)."""
        if not self.answer_drop_every:
            return False
        self._answer_chunks += 1
        return self._answer_chunks % self.answer_drop_every == 0

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    upstream: asyncio.StreamWriter | None) -> None:
        """Forward ``reader`` to ``writer``; ``upstream`` is set for the server-to-client direction
        (the one whose answers may be dropped) and is reset with ``writer`` when one is."""
        dropped = False
        try:
            while not self._cut:
                data = await reader.read(CHUNK)
                if not data:
                    break
                if self.latency_s:
                    await asyncio.sleep(self.latency_s)
                if self._cut:
                    break
                if upstream is not None and self._drops():
                    writer.write(data[:max(0, min(self.answer_drop_after, len(data) - 1))])
                    await writer.drain()
                    self.dropped += 1
                    dropped = True
                    upstream.transport.abort()
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort() if self._cut or dropped else writer.close()
