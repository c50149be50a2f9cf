"""The rate limiter with its Redis a few milliseconds away (issue 23, point 4): pace and 429s.

One worker host (``dispatcher worker`` as shipped) sends a campaign for ``--seconds`` against the
sandbox, which enforces the same limit as the workers are given (``--limit`` bulk requests a
minute) and answers after ``--sandbox-latency-ms``. The store, and so the limiter, is reached
either directly (``direct``, the baseline of the same run) or through
``dispatcher.dev.faultproxy`` adding ``--redis-latency-ms`` to every chunk in each direction
(``2 ms``: every Redis round trip pays at least twice that). The broker stays direct. Printed per
run: the pace as a share of the limit (from the sandbox's own request log, after a 2 s start-up),
the busiest 10 s window as a share of what the limit allows in it, and the number of 429s.

Run: ``.venv/bin/python bench/bench_faults.py [--limit 1200] [--seconds 15] [--repeat 2]``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import httpx
import pandas as pd
import redis
from whole_list import submit_prepared  # this folder: a script's own

from dispatcher.dev.faultproxy import FaultProxy
from dispatcher.dev.services import Service, start_redis, start_sandbox, start_worker
from dispatcher.keys import Keys
from dispatcher.sending import campaigns
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.store import CampaignStore
from dispatcher.settings import Settings
from tasks.enqueue import CeleryEnqueuer

TOKEN = "bench-token"
PREFIX = "benchfaults"
#: Seconds of start-up left out of the pace.
WARM_UP_S = 2.0


@dataclass
class Run:
    config: str
    pace_share: float
    busiest_10s_share: float
    throttled: int


def recipients(n: int, offset: int) -> pd.DataFrame:
    numbers = [f"+346{offset + i:08d}" for i in range(n)]
    return pd.DataFrame({"row": range(2, n + 2), "to": numbers, "text": [f"Hola {i}" for i in range(n)],
                         "sender": ["ACME"] * n, "parts": [1] * n, "unicode": [False] * n,
                         "price": [0.045] * n, "country": ["ES"] * n})


def busiest(stamps: list[float], window_s: float) -> int:
    """Most requests in any ``window_s`` seconds."""
    best, lo = 0, 0
    for hi, t in enumerate(stamps):
        while t - stamps[lo] > window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def bulk_requests(sandbox: Service, since: float) -> list[dict[str, float]]:
    page = httpx.get(f"{sandbox.url}/_sandbox/requests", params={"since": since, "limit": 1_000_000},
                     timeout=60).json()
    return [r for r in page["requests"] if r["endpoint"] == "POST /sms/bulk"]


def one_run(config: str, redis_service: Service, sandbox: Service, redis_latency_s: float, limit: int,
            seconds: float, sandbox_latency_ms: int, offset: int) -> Run:
    http = httpx.Client(base_url=sandbox.url, timeout=60)
    http.post("/_sandbox/reset", json={"balance": 1e12, "rate_limit_per_min": limit}).raise_for_status()
    http.post("/_sandbox/faults", json={"latency_ms": sandbox_latency_ms}).raise_for_status()
    port = int(redis_service.url.rsplit(":", 1)[1].split("/")[0])
    client = redis.Redis.from_url(redis_service.url)
    keys = Keys(PREFIX)
    store, ops = CampaignStore(client, keys), BatchOps(client, keys)
    with FaultProxy("127.0.0.1", port) as proxy:
        proxy.latency_s = redis_latency_s
        store_url = f"redis://127.0.0.1:{proxy.port}/0" if redis_latency_s else redis_service.url
        settings = Settings.from_env(environ={}, env_file=None).with_overrides(
            instasent_token=TOKEN, instasent_base_url=sandbox.url, redis_url=store_url,
            broker_url=redis_service.url, key_prefix=PREFIX, rate_limit_per_min=limit)
        env = {"REDIS_URL": store_url, "CELERY_BROKER_URL": redis_service.url, "INSTASENT_TOKEN": TOKEN,
               "INSTASENT_BASE_URL": sandbox.url, "DISPATCHER_RATE_LIMIT": str(limit),
               "DISPATCHER_KEY_PREFIX": PREFIX, "DISPATCHER_ALLOW_VOLATILE_REDIS": "1"}
        worker = start_worker(env, concurrency=None)
        try:
            n = int(limit / 60 * (seconds + WARM_UP_S + 10) * 100)  # more than the run can send
            frame = recipients(n, offset)
            campaign_id = submit_prepared(store, ops, CeleryEnqueuer(settings), settings, name=config, messages=frame)
            deadline = time.monotonic() + 60
            while store.get(campaign_id).counts["sent"] == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(WARM_UP_S)
            t0 = time.time()
            time.sleep(seconds)
            t1 = time.time()
            campaigns.cancel(store, ops, campaign_id, ttl_s=60)
        finally:
            worker.stop()
    stamps = sorted(r["t"] for r in bulk_requests(sandbox, t0) if r["t"] <= t1)
    everything = bulk_requests(sandbox, 0)
    pace = (len(stamps) - 1) / (stamps[-1] - stamps[0]) * 60 / limit if len(stamps) > 1 else 0.0
    all_stamps = sorted(r["t"] for r in everything)
    return Run(config, pace, busiest(all_stamps, 10.0) / (limit / 6),
               sum(1 for r in everything if r["status"] == 429))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=1200, help="bulk requests a minute (workers and sandbox)")
    parser.add_argument("--seconds", type=float, default=15.0, help="steady sending measured per run")
    parser.add_argument("--redis-latency-ms", type=float, default=2.0, help="added to each chunk, each way")
    parser.add_argument("--sandbox-latency-ms", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    services: list[Service] = []
    runs: list[Run] = []
    try:
        services.append(redis_service := start_redis())
        services.append(sandbox := start_sandbox("--rate-limit", str(args.limit), "--balance", "1e12", token=TOKEN))
        offset = 0
        for _ in range(args.repeat):
            for config, latency_s in (("direct", 0.0), (f"{args.redis_latency_ms:g} ms", args.redis_latency_ms / 1000)):
                runs.append(one_run(config, redis_service, sandbox, latency_s, args.limit, args.seconds,
                                    args.sandbox_latency_ms, offset))
                offset += 10**6
                print(f"  {config}: pace {runs[-1].pace_share:.1%}", flush=True)
    finally:
        for service in reversed(services):
            service.stop()
    print(f"\nlimit {args.limit}/min, sandbox {args.sandbox_latency_ms} ms, {args.seconds:g} s measured per run")
    print(f"{'Redis':<10}{'pace':>8}{'10s max':>9}{'429':>5}")
    for r in runs:
        print(f"{r.config:<10}{r.pace_share:>8.1%}{r.busiest_10s_share:>9.1%}{r.throttled:>5}")


if __name__ == "__main__":
    main()
