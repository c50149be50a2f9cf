"""Receiver throughput: delivery reports per second through the real ``dispatcher webhook`` process,
beside a trivial starlette endpoint (same server settings) in the same run.

Run: ``.venv/bin/python bench/bench_webhook.py [--reports 20000] [--concurrency 8] [--repeat 3] [--workers 1]``
(``--workers``: receiver processes, as ``dispatcher webhook --workers``; the trivial endpoint keeps one).
The load comes from ``wrk`` when it is installed (``apt-get install wrk``): Python clients are
slower than the receiver here, so without wrk the figure is the client's ceiling, not the server's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pandas as pd
import redis

from dispatcher.dev.services import Service, free_port, http_ready, spawn, start_redis, start_webhook, wait_until
from dispatcher.keys import Keys
from dispatcher.sending import ledger
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.store import CampaignStore

SECRET = "bench-secret-0123456789abcdef"
BASELINE = '''
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def ok(request):
    await request.body()
    return JSONResponse({"ok": True})

app = Starlette(routes=[Route("/dlr/{secret}", ok, methods=["POST"]), Route("/healthz", ok)])
uvicorn.run(app, host="127.0.0.1", port=int(__import__("sys").argv[1]), log_level="warning", access_log=False,
            loop="uvloop", http="httptools")
'''


def record_sent(client: redis.Redis, keys: Keys, cid: str, n: int) -> None:
    """Record the ``n`` messages as sent under ids ``i{k}``, as the workers would: a report is
    applied only to a message recorded as sent under its id."""
    ops = BatchOps(client, keys)
    for batch in range((n + 99) // 100):
        claim = ops.claim(cid, batch, lease_s=0)
        size = min(100, n - 100 * batch)
        ops.record(cid, batch, [(i, ledger.encode("sent", 1, f"i{100 * batch + i}")) for i in range(size)],
                   otherwise="p", token=claim.token)


def blast(url: str, bodies: list[dict[str, object]], concurrency: int) -> float:
    """Reports per second POSTed by ``concurrency`` keep-alive clients."""
    chunks = [bodies[i::concurrency] for i in range(concurrency)]

    def worker(chunk: list[dict[str, object]]) -> None:
        with httpx.Client(timeout=10) as client:
            for body in chunk:
                client.post(url, json=body).raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, chunks))
    return len(bodies) / (time.perf_counter() - started)


WRK_SCRIPT = """
local n = 0
local prefix = os.getenv("CID")
local total = tonumber(os.getenv("TOTAL"))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  local i = (n * 7919) % total
  local body = string.format(
    '{"id":"i%d","clientId":"%s-%d-%d","status":"delivered","code":0,"eventAt":"2026-11-23T10:00:00Z"}',
    i, prefix, math.floor(i / 100), i % 100)
  return wrk.format(nil, nil, nil, body)
end
"""


def wrk_rate(url: str, cid: str, total: int, seconds: int = 5) -> float | None:
    """Requests/s that ``wrk`` (2 threads, 32 connections) reaches, or None without wrk."""
    import os
    import re
    import shutil
    import subprocess
    import tempfile

    if shutil.which("wrk") is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT)
    result = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", "-s", f.name, url], capture_output=True,
                            text=True, env={**os.environ, "CID": cid, "TOTAL": str(total)}, timeout=seconds + 30)
    os.unlink(f.name)
    match = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
    return float(match.group(1)) if match else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    services: list[Service] = []
    try:
        redis_service = start_redis()
        services.append(redis_service)
        client = redis.Redis.from_url(redis_service.url)
        store = CampaignStore(client, Keys("dsp"))
        n = args.reports
        frame = pd.DataFrame({"row": range(2, n + 2), "to": [f"+346{i:08d}" for i in range(n)], "text": ["x"] * n,
                              "sender": ["ACME"] * n, "parts": [1] * n, "unicode": [False] * n,
                              "price": [0.045] * n, "country": ["ES"] * n})
        receiver = start_webhook({"REDIS_URL": redis_service.url, "DISPATCHER_WEBHOOK_SECRET": SECRET,
                                  "DISPATCHER_ALLOW_VOLATILE_REDIS": "1"}, workers=args.workers)
        services.append(receiver)
        port = free_port()
        baseline = spawn("baseline", [sys.executable, "-c", BASELINE, str(port)], url=f"http://127.0.0.1:{port}")
        services.append(baseline)
        wait_until(http_ready(f"{baseline.url}/healthz"), baseline)
        webhook = "dispatcher webhook" + (f" --workers {args.workers}" if args.workers > 1 else "")
        rates: dict[str, list[float]] = {"trivial starlette endpoint": [], webhook: []}
        for _ in range(args.repeat):
            cid = store.create("bench", frame, window=1)
            record_sent(client, store.keys, cid, n)
            bodies: list[dict[str, object]] = [
                {"id": f"i{i}", "clientId": f"{cid}-{i // 100}-{i % 100}", "status": "delivered", "code": 0,
                 "eventAt": "2026-11-23T10:00:00Z"} for i in range(n)]
            base_wrk = wrk_rate(f"{baseline.url}/dlr/{SECRET}", cid, n)
            hook_wrk = wrk_rate(f"{receiver.url}/dlr/{SECRET}", cid, n)
            if base_wrk is not None and hook_wrk is not None:
                rates["trivial starlette endpoint"].append(base_wrk)
                rates[webhook].append(hook_wrk)
                assert store.get(cid).delivery["delivered"] > 0
                continue
            rates["trivial starlette endpoint"].append(blast(f"{baseline.url}/dlr/{SECRET}", bodies, args.concurrency))
            rates[webhook].append(blast(f"{receiver.url}/dlr/{SECRET}", bodies, args.concurrency))
            assert store.get(cid).delivery["delivered"] == n
        base = statistics.median(rates["trivial starlette endpoint"])
        print(f"\nDelivery reports, {n:,} per run, {args.concurrency} keep-alive clients (median of {args.repeat})")
        for label, values in rates.items():
            median = statistics.median(values)
            print(f"{label:<40}{median:>10,.0f} reports/s{median / base:>8.2f}x")
    finally:
        for service in reversed(services):
            service.stop()


if __name__ == "__main__":
    main()
