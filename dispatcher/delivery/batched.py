"""One Lua script called by many coroutines at once, sent to Redis as one pipeline per event-loop turn.

The receiver gets one report per HTTP request, from many connections at a time. Calling the
script once per report costs a Redis round trip and the asyncio client's per-command overhead
each time; pipelining the calls that arrive in the same turn of the event loop pays them once per
turn. Each caller still gets its own result (or its own error), so it reads like a plain call.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

Call = tuple[Sequence[str], Sequence[str | int]]


class BatchedScript:
    """``await script(keys, args)`` for one Lua script, pipelined with the calls of the same loop turn."""

    def __init__(self, client: aioredis.Redis, source: str) -> None:
        self.client = client
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self._waiting: list[tuple[Call, asyncio.Future[Any]]] = []
        self._flushes: set[asyncio.Task[None]] = set()  # referenced until done, as asyncio asks

    async def __call__(self, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """The script's reply for ``keys`` and ``args``.

        Raises:
            redis.exceptions.RedisError: when Redis cannot be reached or the script fails.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting.append(((keys, args), future))
        if len(self._waiting) == 1:  # the first caller of this turn sends everyone's calls, next turn
            task = loop.create_task(self._flush())
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
        return await future

    async def _flush(self) -> None:
        batch, self._waiting = self._waiting, []
        try:
            replies = await self._send([call for call, _ in batch])
            if any(isinstance(reply, NoScriptError) for reply in replies):  # Redis restarted or was flushed
                await self.client.script_load(self.source)
                replies = await self._send([call for call, _ in batch])
        except Exception as exc:  # every caller of this batch gets the error, as a plain call would
            replies = [exc] * len(batch)
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # the caller went away (its request was cancelled)
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _send(self, calls: list[Call]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for keys, args in calls:
            pipe.evalsha(self.sha, len(keys), *keys, *args)
        return list(await pipe.execute(raise_on_error=False))
