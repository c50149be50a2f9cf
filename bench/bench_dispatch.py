"""Dispatch throughput: messages/s through 1, 2 and 4 Celery worker processes to the sandbox,
beside the same bulks POSTed by a bare httpx loop in the same run, plus Redis bytes per message.

Run: ``.venv/bin/python bench/bench_dispatch.py [--messages 100000] [--repeat 3]``.
The machine's speed drifts by 20-40 % over minutes, so read the ratio, not the absolute figure.
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx
import orjson
import pandas as pd
import redis

from dispatcher.dev.services import Service, start_redis, start_sandbox, start_worker
from dispatcher.instasent.client import MAX_BULK_ITEMS
from dispatcher.keys import Keys
from dispatcher.sending import campaigns
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.store import CampaignStore
from dispatcher.settings import Settings
from tasks.enqueue import CeleryEnqueuer

TOKEN = "bench-token"


def recipients(n: int, offset: int) -> pd.DataFrame:
    """``n`` distinct Spanish mobiles with ~70-character texts."""
    numbers = [f"+346{offset + i:08d}" for i in range(n)]
    text = "Hola {}, tu pedido sale hoy. Responde STOP para no recibir mas mensajes."
    return pd.DataFrame({"row": range(2, n + 2), "to": numbers, "text": [text.format(i) for i in range(n)],
                         "sender": ["ACME"] * n, "parts": [1] * n, "unicode": [False] * n,
                         "price": [0.045] * n, "country": ["ES"] * n})


def bare_httpx(url: str, frame: pd.DataFrame) -> float:
    """Messages/s of one sync httpx client POSTing the same bulks back to back."""
    items = [{"from": s, "to": t, "text": x, "clientId": f"bare-{time.time_ns()}-{i}"}
             for i, (s, t, x) in enumerate(zip(frame["sender"], frame["to"], frame["text"], strict=True))]
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}",
                                             "Content-Type": "application/json"}, timeout=30) as client:
        started = time.perf_counter()
        for lo in range(0, len(items), MAX_BULK_ITEMS):
            client.post("/sms/bulk", content=orjson.dumps(items[lo:lo + MAX_BULK_ITEMS])).raise_for_status()
        return len(items) / (time.perf_counter() - started)


def dispatched(settings: Settings, frame: pd.DataFrame, store: CampaignStore, ops: BatchOps) -> tuple[float, float]:
    """Submit one campaign and time it to completion: (messages/s, Redis bytes per message)."""
    cid = campaigns.submit(store, ops, CeleryEnqueuer(settings), settings, name="bench", messages=frame)
    started = time.perf_counter()
    while (info := store.get(cid)).state != "completed":
        if info.state in ("paused", "failed"):
            raise RuntimeError(f"bench campaign stopped: {info}")
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    assert info.counts["sent"] == len(frame), info.counts
    client: redis.Redis = store.redis
    keys = list(client.scan_iter(f"{settings.key_prefix}:c:{cid}*", count=1000))
    used = sum(client.memory_usage(k) or 0 for k in keys)
    return len(frame) / elapsed, used / len(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    services: list[Service] = []
    try:
        redis_service = start_redis()
        services.append(redis_service)
        sandbox = start_sandbox("--rate-limit", "0", "--balance", "1e12", token=TOKEN)
        services.append(sandbox)
        settings = Settings.from_env(environ={}, env_file=None).with_overrides(
            instasent_token=TOKEN, instasent_base_url=sandbox.url, redis_url=redis_service.url,
            rate_limit_per_min=10**7, queue_window=32)
        env = {"REDIS_URL": redis_service.url, "INSTASENT_TOKEN": TOKEN, "INSTASENT_BASE_URL": sandbox.url,
               "DISPATCHER_RATE_LIMIT": str(10**7), "DISPATCHER_QUEUE_WINDOW": "32",
               "DISPATCHER_ALLOW_VOLATILE_REDIS": "1"}
        client = redis.Redis.from_url(redis_service.url)
        keys = Keys(settings.key_prefix)
        store, ops = CampaignStore(client, keys), BatchOps(client, keys)
        results: dict[str, list[float]] = {"bare httpx loop": []}
        bytes_per_message: list[float] = []
        offset = 0
        for concurrency in args.workers:
            worker = start_worker(env, concurrency=concurrency, events=False)
            label = f"{concurrency} worker process{'es' if concurrency > 1 else ''}"
            results[label] = []
            try:
                for _ in range(args.repeat):
                    frame = recipients(args.messages, offset)
                    offset += args.messages
                    rate, per_message = dispatched(settings, frame, store, ops)
                    results[label].append(rate)
                    bytes_per_message.append(per_message)
                    results["bare httpx loop"].append(bare_httpx(sandbox.url, recipients(20_000, offset)))
                    offset += 20_000
                    sandbox_reset(sandbox.url)
            finally:
                worker.stop()
        baseline = statistics.median(results["bare httpx loop"])
        print(f"\nDispatch of {args.messages:,} messages (median of {args.repeat}; sandbox, no latency)")
        print(f"{'configuration':<24}{'messages/s':>12}{'vs bare httpx':>16}")
        for label, rates in results.items():
            median = statistics.median(rates)
            print(f"{label:<24}{median:>12,.0f}{median / baseline:>15.2f}x")
        print(f"Redis bytes per message (campaign + batches + ledger): {statistics.median(bytes_per_message):.0f}")
    finally:
        for service in reversed(services):
            service.stop()


def sandbox_reset(url: str) -> None:
    """Forget the sandbox's messages so its memory stays flat between runs."""
    httpx.post(f"{url}/_sandbox/reset", json={"balance": 1e12}, timeout=30).raise_for_status()


if __name__ == "__main__":
    main()
