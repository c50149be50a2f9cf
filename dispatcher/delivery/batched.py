"""One Lua script called by many coroutines at once, sent to Redis as ONE script call per batch.

The receiver gets one report per HTTP request, from many connections at a time. Calling the
script once per report costs a Redis round trip and the asyncio client's per-command overhead
each time. Here the calls waiting together are sent as one ``EVALSHA`` of a wrapper script
(``lua/batched.lua``, composed by :func:`dispatcher.schema.scripts.batched`) that runs the
original script once per call, in order, each in ``pcall`` so one failing call does not fail the
others. At most :data:`MAX_IN_FLIGHT` batches are in flight; the calls that arrive
meanwhile wait and go together in the next one, so the batches grow with the load by themselves
and nothing waits on a timer when the load is light. Each caller still gets its own result (or
its own error), so it reads like a plain call; it returns only after Redis ran its call.

With ``replicas``, the script call goes in one pipeline with a ``WAIT`` for that many replicas
(the same connection, so it counts the call's writes): a caller gets its reply only once the
replicas have it, or :class:`~dispatcher.delivery.replicated.NotReplicated` (see
:mod:`dispatcher.delivery.replicated`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from dispatcher.delivery.replicated import require, wait_ms
from dispatcher.schema.scripts import batched

Call = tuple[Sequence[str], Sequence[str | int]]

#: Batches sent and not answered yet, at most; two lets the next batch form while Redis runs one.
MAX_IN_FLIGHT = 2
#: Calls in one batch, at most (one script call blocks Redis while it runs: keep it short).
MAX_BATCH = 256

class BatchedScript:
    """``await script(keys, args)`` for one Lua script (``source``, its text without the prelude),
    sent in one script call with the calls waiting with it."""

    def __init__(self, client: aioredis.Redis, source: str, replicas: int = 0, wait_s: float = 0.5) -> None:
        self.client = client
        self.replicas = replicas
        self.wait_s = wait_s
        self.source = batched(source)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()
        self._waiting: list[tuple[Call, asyncio.Future[Any]]] = []
        self._in_flight = 0
        self._scheduled = False
        self._flushes: set[asyncio.Task[None]] = set()  # referenced until done, as asyncio asks

    async def __call__(self, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """The script's reply for ``keys`` and ``args``.

        Raises:
            NotReplicated: when fewer than ``replicas`` replicas acknowledged the call within ``wait_s`` s.
            redis.exceptions.RedisError: when Redis cannot be reached or the script fails.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting.append(((keys, args), future))
        self._kick(loop)
        return await future

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        # The batch is sent on the next turn, so every caller of this turn joins it.
        if self._waiting and not self._scheduled and self._in_flight < MAX_IN_FLIGHT:
            self._scheduled = True
            loop.call_soon(self._start, loop)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        if not self._waiting or self._in_flight >= MAX_IN_FLIGHT:
            return
        batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
        self._in_flight += 1
        task = loop.create_task(self._flush(batch))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)
        self._kick(loop)

    async def _flush(self, batch: list[tuple[Call, asyncio.Future[Any]]]) -> None:
        try:
            calls = [call for call, _ in batch]
            try:
                replies = await self._send(calls)
            except NoScriptError:  # Redis restarted or was flushed
                await self.client.script_load(self.source)
                replies = await self._send(calls)
        except Exception as exc:  # every caller of this batch gets the error, as a plain call would
            replies = [exc] * len(batch)
        finally:
            self._in_flight -= 1
            self._kick(asyncio.get_running_loop())
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # the caller went away (its request was cancelled)
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _send(self, calls: list[Call]) -> list[Any]:
        keys: list[str] = []
        args: list[str | int] = [len(calls)]
        for call_keys, call_args in calls:
            keys.extend(call_keys)
            args.extend((len(call_keys), len(call_args), *call_args))
        if not self.replicas:
            replies = await self.client.evalsha(self.sha, len(keys), *keys, *args)
            return list(replies)  # a failed call's reply is a ResponseError instance in the list
        pipe = self.client.pipeline(transaction=False)
        pipe.evalsha(self.sha, len(keys), *keys, *args)
        pipe.wait(self.replicas, wait_ms(self.wait_s))
        replies, acks = await pipe.execute()
        require(int(acks), self.replicas)
        return list(replies)
