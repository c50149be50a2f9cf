"""BatchedScript: concurrent calls share a pipeline, each gets its own reply or error (real Redis)."""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio as aioredis

from dispatcher.delivery.batched import BatchedScript

SCRIPT = """
if ARGV[1] == 'fail' then return redis.error_reply('asked to fail') end
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""


def test_concurrent_calls_each_get_their_own_reply_even_after_the_script_cache_is_flushed(
        redis_url: str, redis_client: redis.Redis) -> None:
    async def main() -> list[object]:
        client = aioredis.Redis.from_url(redis_url)
        script = BatchedScript(client, SCRIPT)
        try:
            first = await asyncio.gather(*(script(["n"], [i]) for i in range(1, 51)))
            await client.script_flush()  # as after a Redis restart: the next batch reloads the script
            second = await asyncio.gather(*(script(["m"], [1]) for _ in range(10)), return_exceptions=True)
            failing = await asyncio.gather(script(["n"], ["fail"]), script(["n"], [0]), return_exceptions=True)
            return [first, second, failing]
        finally:
            await client.aclose()

    first, second, failing = asyncio.run(main())
    assert isinstance(first, list) and len(set(first)) == 50 and max(first) == sum(range(1, 51))
    assert isinstance(second, list) and sorted(second) == list(range(1, 11))
    assert isinstance(failing, list) and isinstance(failing[0], redis.exceptions.ResponseError)
    assert failing[1] == sum(range(1, 51))


def test_an_unreachable_redis_fails_every_caller() -> None:
    async def main() -> list[object]:
        client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
        script = BatchedScript(client, SCRIPT)
        try:
            return await asyncio.gather(*(script(["n"], [1]) for _ in range(3)), return_exceptions=True)
        finally:
            await client.aclose()

    replies = asyncio.run(main())
    assert len(replies) == 3 and all(isinstance(r, redis.exceptions.ConnectionError) for r in replies)
