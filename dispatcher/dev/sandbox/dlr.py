"""Delivery reports and inbound messages, POSTed to the configured ``dlr_url`` as Instasent does.

Each report is one JSON POST, ``{"id", "clientId", "status", "code", "eventAt"}`` (inbound messages
add ``from``, ``to`` and ``message``). A 2xx answer within :data:`TIMEOUT_S` delivers it; anything
else (another status, a refused connection, a timeout) is retried after 0.2 s, 0.4 s, 0.8 s, … up
to :data:`MAX_ATTEMPTS` attempts, so the receiver may see a report more than once.

One ``httpx.AsyncClient`` and :data:`CONCURRENCY` worker tasks serve every report; reports wait
for their due time on the event loop's timers. :meth:`DlrSender.clear` (on reset) drops every
pending report, including retries.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from dispatcher.dev.sandbox.stats import Stats

#: Reports in flight at once.
CONCURRENCY = 32
#: Attempts per report before it is given up.
MAX_ATTEMPTS = 8
#: Seconds before the first retry; each further retry waits twice as long.
FIRST_BACKOFF_S = 0.2
#: Seconds the receiver has to answer one attempt.
TIMEOUT_S = 5.0

#: ``code`` of each final status.
STATUS_CODES = {"delivered": 0, "failed": 1, "expired": 2}

_JSON_HEADERS = {"Content-Type": "application/json", "User-Agent": "instasent-sandbox"}


@dataclass(slots=True)
class Report:
    """One POST to make: the JSON ``payload`` to ``url``, from reset ``generation``."""

    url: str
    payload: dict[str, Any]
    generation: int
    inbound: bool = False
    attempts: int = 0


class DlrSender:
    """Posts reports with bounded concurrency and exponential-backoff retries."""

    def __init__(self, stats: Stats, *, concurrency: int = CONCURRENCY, max_attempts: int = MAX_ATTEMPTS,
                 first_backoff_s: float = FIRST_BACKOFF_S, timeout_s: float = TIMEOUT_S) -> None:
        self.stats = stats
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.first_backoff_s = first_backoff_s
        self.timeout_s = timeout_s
        #: Bumped by :meth:`clear`; reports of an older generation are dropped.
        self.generation = 0
        #: Reports created and neither delivered nor given up yet.
        self.pending = 0
        self._client: httpx.AsyncClient | None = None
        self._queue: asyncio.Queue[Report] | None = None
        self._slots: asyncio.Semaphore | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Create the HTTP client and the workers (inside the app's lifespan)."""
        if self._client is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._client = httpx.AsyncClient(
            timeout=self.timeout_s, trust_env=False, follow_redirects=False,
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
        )
        self._queue = asyncio.Queue()
        self._slots = asyncio.Semaphore(self.concurrency)
        self._workers = [asyncio.create_task(self._work()) for _ in range(self.concurrency)]

    async def stop(self) -> None:
        """Stop the workers and close the client; pending reports are dropped."""
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def clear(self) -> None:
        """Drop every pending report and retry."""
        self.generation += 1
        self.pending = 0
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait()

    def new_report(self, url: str, payload: dict[str, Any], inbound: bool = False) -> Report:
        """A report of the current generation, counted as pending."""
        self.pending += 1
        return Report(url, payload, self.generation, inbound)

    def schedule(self, reports: Sequence[Report], delay_s: float) -> None:
        """Post ``reports`` in the background after ``delay_s`` seconds."""
        if not reports:
            return
        if self._loop is None:
            raise RuntimeError("DlrSender.start() was not awaited (the app's lifespan did not run)")
        if delay_s <= 0:
            self._enqueue(reports)
        else:
            self._loop.call_later(delay_s, self._enqueue, reports)

    async def send_now(self, reports: Sequence[Report]) -> list[bool]:
        """Make the first attempt of each report now; failures go on to background retries."""
        return list(await asyncio.gather(*(self._attempt(r) for r in reports)))

    def _enqueue(self, reports: Sequence[Report]) -> None:
        assert self._queue is not None
        for report in reports:
            if report.generation == self.generation:
                self._queue.put_nowait(report)

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            report = await self._queue.get()
            await self._attempt(report)

    async def _attempt(self, report: Report) -> bool:
        """One POST of ``report``; True when the receiver answered 2xx."""
        if report.generation != self.generation:
            return False
        assert self._client is not None and self._slots is not None
        async with self._slots:
            try:
                response = await self._client.post(report.url, content=orjson.dumps(report.payload),
                                                   headers=_JSON_HEADERS)
                delivered = response.is_success
            except httpx.HTTPError:
                delivered = False
        if report.generation != self.generation:
            return delivered
        if delivered:
            self.pending -= 1
            if report.inbound:
                self.stats.inbound_sent += 1
            else:
                self.stats.dlr_sent += 1
            return True
        report.attempts += 1
        if report.attempts >= self.max_attempts:
            self.pending -= 1
            self.stats.dlr_failed += 1
            return False
        self.stats.dlr_retries += 1
        self.schedule([report], self.first_backoff_s * 2 ** (report.attempts - 1))
        return False
