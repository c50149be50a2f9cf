"""A real worker process meets an answer it must refuse (a 50 MB body, endless headers): it fails that
batch as "may have been processed", reconciles it, keeps its memory, and sends the next batch normally."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import psutil
import pytest
import redis

from dispatcher.settings import Settings
from tests.helpers import Harness, SandboxHandle, assert_exactly_once, finished, recipients

pytestmark = pytest.mark.slow

MB = 1024 * 1024
#: What the hostile server writes instead of the answer to one bulk POST: a head, then a piece
#: repeated until the worker hangs up (or 100 MB went out).
HOSTILE = {
    "a 50 MB body": (b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                     % (50 * MB), b"x" * (256 * 1024)),
    "endless headers": (b"HTTP/1.1 201 Created\r\n", b"X-Pad: " + b"a" * 1000 + b"\r\n"),
}


class HostileProxy:
    """Forwards every request to the sandbox and relays its answer, except that the answer to the
    bulk POST numbered ``hostile_at`` (0-based) is replaced by :data:`HOSTILE`'s bytes, after the
    sandbox processed the request."""

    def __init__(self, sandbox_url: str, hostile: tuple[bytes, bytes]) -> None:
        self.hostile_at: int | None = None
        self.bulks = 0
        #: Requests seen, as ``"METHOD /path"``, in order; a hostile answer appears as ``"HOSTILE"``.
        self.log: list[str] = []
        self.hostile_done = threading.Event()
        self._lock = threading.Lock()
        upstream = httpx.Client(base_url=sandbox_url, timeout=30)
        outer, hostile_bytes = self, hostile

        class Relay(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

            def do_GET(self) -> None:
                self._relay()

            do_POST = do_GET

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer._lock:
                    bulk = self.command == "POST" and self.path.endswith("/sms/bulk")
                    hostile = bulk and outer.bulks == outer.hostile_at
                    outer.bulks += bulk
                    outer.log.append(f"{self.command} {self.path.split('?')[0]}")
                headers = {name: value for name, value in self.headers.items()
                           if name.lower() in ("authorization", "content-type", "accept")}
                answer = upstream.request(self.command, self.path, content=body, headers=headers)
                if hostile:
                    outer.log.append("HOSTILE")
                    self._pour(*hostile_bytes)
                    return
                head = [f"HTTP/1.1 {answer.status_code} X", f"Content-Length: {len(answer.content)}"]
                head += [f"{name}: {value}" for name, value in answer.headers.items()
                         if name.lower().startswith("x-ratelimit") or name.lower() == "content-type"]
                self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + answer.content)

            def _pour(self, head: bytes, piece: bytes) -> None:
                self.close_connection = True
                try:
                    self.wfile.write(head)
                    for _ in range(100 * MB // len(piece)):
                        self.wfile.write(piece)
                except OSError:
                    pass  # the worker hung up, as it should
                finally:
                    outer.hostile_done.set()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Relay)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        self._upstream = upstream

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._upstream.close()


@pytest.fixture(params=HOSTILE.values(), ids=HOSTILE.keys())
def proxy(request: pytest.FixtureRequest, sandbox: SandboxHandle) -> Iterator[HostileProxy]:
    server = HostileProxy(sandbox.url, request.param)
    yield server
    server.close()


def rss(pid: int, peak: bool = False) -> int:
    """Resident bytes of process ``pid`` and its children: now, or at their peak so far (``VmHWM``)."""
    process = psutil.Process(pid)
    total = 0
    for each in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += _peak(each.pid) if peak else each.memory_info().rss
    return total


def _peak(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for process {pid}")


def test_a_refused_answer_is_reconciled_without_growing_the_worker_and_the_next_batch_goes_out(
        proxy: HostileProxy, settings: Settings, redis_client: redis.Redis, sandbox: SandboxHandle) -> None:
    harness = Harness(settings.with_overrides(queue_window=8, instasent_base_url=proxy.url), redis_client, sandbox)
    try:
        worker = harness.start_worker(concurrency=1)
        warm = harness.submit(recipients(200), name="warm-up")
        assert harness.wait(warm, finished).state == "completed"
        before = rss(worker.pid)

        proxy.hostile_at = proxy.bulks  # the next bulk POST gets the hostile answer
        cid = harness.submit(recipients(300, start=1000))
        info = harness.wait(cid, finished)
        assert proxy.hostile_done.is_set()
        grown = rss(worker.pid, peak=True) - before  # a body read whole and freed would still show here

        assert info.state == "completed" and info.counts["sent"] == 300
        assert_exactly_once(harness, cid, info)
        # The refused batch was reconciled (a search by clientId after it), then bulks went on.
        after = proxy.log[proxy.log.index("HOSTILE") + 1:]
        assert "GET /sms" in after and "POST /sms/bulk" in after
        assert grown < 20 * MB, f"the worker grew by {grown / MB:.1f} MB"
        assert worker.alive()
    finally:
        harness.stop()
