"""Sandbox throughput: 100-item ``POST /sms/bulk`` requests/s from one keep-alive httpx client,
beside a baseline in the same run: the same client posting the same bodies to a trivial Starlette
endpoint (it answers ``[]`` without reading JSON) in its own uvicorn process with the same settings.

Run: ``.venv/bin/python bench/bench_sandbox.py [--requests 2000] [--repeat 3]``.
Each repetition times the baseline then the sandbox (reset in between, so every body is accepted);
the figures are medians. "server CPU" is the server process's own CPU time per request (Linux).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
import orjson

from dispatcher.dev.services import Service, free_port, http_ready, spawn, start_sandbox, wait_until

TOKEN = "bench-token"
ITEMS_PER_BULK = 100
TEXT = "Hola {}, tu pedido sale hoy. Responde STOP para no recibir mas mensajes."


def bodies(count: int) -> list[bytes]:
    """``count`` bulk bodies of 100 distinct Spanish mobiles, each with its own clientId and text."""
    out = []
    for r in range(count):
        items = [{"from": "ACME", "to": f"+346{r * ITEMS_PER_BULK + i:08d}", "text": TEXT.format(i),
                  "clientId": f"bench-{r}-{i}"} for i in range(ITEMS_PER_BULK)]
        out.append(orjson.dumps(items))
    return out


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far; None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post_all(url: str, payloads: list[bytes], pid: int) -> tuple[float, float | None]:
    """POST every payload back to back: (requests/s, server CPU µs per request)."""
    with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {TOKEN}",
                                                         "Content-Type": "application/json"}) as client:
        client.post("/sms/bulk", content=b"[]")  # open the connection
        cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        for payload in payloads:
            response = client.post("/sms/bulk", content=payload)
            if response.status_code not in (200, 201):
                raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:200]}")
        elapsed = time.perf_counter() - started
        cpu_after = cpu_seconds(pid)
    per_request = None if cpu_before is None or cpu_after is None else (cpu_after - cpu_before) / len(payloads)
    return len(payloads) / elapsed, None if per_request is None else per_request * 1e6


def serve_baseline(port: int) -> None:
    """The baseline server: one endpoint answering ``[]``, under uvicorn as the sandbox runs."""
    import importlib.util

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def bulk(request: Request) -> Response:
        await request.body()
        return Response(b"[]", status_code=201, media_type="application/json")

    app = Starlette(routes=[Route("/{path:path}", bulk, methods=["GET", "POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
                http="httptools" if importlib.util.find_spec("httptools") else "h11")


def start_baseline() -> Service:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    service = spawn("baseline", [sys.executable, __file__, "--serve-baseline", str(port)], url)
    wait_until(http_ready(url), service, timeout_s=30)
    return service


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000, help="bulk requests per timing")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--serve-baseline", type=int, default=None, help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.serve_baseline is not None:
        serve_baseline(args.serve_baseline)
        return
    payloads = bodies(args.requests)
    results: dict[str, list[float]] = {"baseline ([] endpoint)": [], "sandbox": []}
    cpu: dict[str, list[float]] = {label: [] for label in results}
    services: list[Service] = []
    try:
        baseline = start_baseline()
        services.append(baseline)
        sandbox = start_sandbox("--rate-limit", "0", "--balance", "1e12", token=TOKEN)
        services.append(sandbox)
        for _ in range(args.repeat):
            for label, service in (("baseline ([] endpoint)", baseline), ("sandbox", sandbox)):
                if service is sandbox:
                    httpx.post(f"{sandbox.url}/_sandbox/reset", timeout=30).raise_for_status()
                rate, cpu_us = post_all(service.url, payloads, service.pid)
                results[label].append(rate)
                if cpu_us is not None:
                    cpu[label].append(cpu_us)
        stats = httpx.get(f"{sandbox.url}/_sandbox/stats", timeout=30).json()
        assert stats["accepted"] == args.requests * ITEMS_PER_BULK, stats
    finally:
        for service in reversed(services):
            service.stop()
    base = statistics.median(results["baseline ([] endpoint)"])
    print(f"\n{args.requests:,} bulks of {ITEMS_PER_BULK} items, one keep-alive httpx client "
          f"(median of {args.repeat})")
    print(f"{'server':<24}{'requests/s':>12}{'messages/s':>13}{'vs baseline':>13}{'server CPU/req':>16}")
    for label, rates in results.items():
        median = statistics.median(rates)
        cpu_text = f"{statistics.median(cpu[label]):,.0f} µs" if cpu[label] else "n/a"
        print(f"{label:<24}{median:>12,.0f}{median * ITEMS_PER_BULK:>13,.0f}{median / base:>12.2f}x{cpu_text:>16}")


if __name__ == "__main__":
    main()
