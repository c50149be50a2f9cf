"""A small TCP fault proxy for tests: put it between a process and a server (Redis, the sandbox)
to add latency, or to cut the link (every live connection closed, new ones refused) and heal it.

It runs its own asyncio loop in a daemon thread of the calling process::

    with FaultProxy("127.0.0.1", 6379) as proxy:
        proxy.latency_s = 0.001          # each chunk, each way
        env["REDIS_URL"] = f"redis://127.0.0.1:{proxy.port}/0"
        ...
        proxy.cut(); time.sleep(8); proxy.heal()
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
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while not self._cut:
                data = await reader.read(CHUNK)
                if not data:
                    break
                if self.latency_s:
                    await asyncio.sleep(self.latency_s)
                if self._cut:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort() if self._cut else writer.close()
