"""Campaigns of any size: the streamed paths beside the whole-list paths, in the same run.

Run: ``.venv/bin/python bench/bench_scale.py [--rows 3000000] [--preflight-rows 1000000]
[--redis-rows 100000] [--list FILE] [--preflight-list FILE]``.

Every figure comes from a fresh process (peak RSS is ``ru_maxrss``), old path and new path on the
same file, one after the other:

* ``preflight`` of ``--preflight-rows`` rows, no HLR: ``whole_list.run_preflight`` (the whole list in
  memory) against ``submission.preflight``;
* ``submit`` of ``--rows`` rows, no HLR, with one worker process sending at 600 bulks/min while
  the list loads: ``run_preflight`` + ``whole_list.submit_preflight`` against ``loading.create_and_load``
  (count, guard, then store chunk by chunk). "first bulk" is the time from the start of the submit
  process to the first message Instasent (the sandbox) accepted;
* ``report`` of the resulting campaign: ``build_report`` + ``write_report`` against
  ``stream_report``, to CSV;
* Redis bytes per message after a ``--redis-rows`` campaign has been sent, both paths.

The lists are written by ``bench_preflight.write_file`` (mostly unique numbers in 15 countries,
duplicates, junk, 10 % Unicode names) unless given. This 2-core machine's speed drifts by 20-40 %
over minutes and other work shares it, so compare the two columns of one run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
TEMPLATE = "Hola {name}, tu codigo {code} te da un 10% en {city}. Responde BAJA para no recibir mas."
TOKEN = "bench-token"


def _settings(sandbox_url: str, redis_url: str) -> Any:
    from dispatcher.settings import Settings

    return Settings.from_env(environ={}, env_file=None).with_overrides(
        instasent_token=TOKEN, instasent_base_url=sandbox_url, redis_url=redis_url, key_prefix="bench",
        queue_window=32)


def _options() -> Any:
    from dispatcher.preflight.result import PreflightOptions

    return PreflightOptions(text=TEMPLATE, sender="Shop", country="ES", hlr=False)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    """CPU seconds of this process so far (every thread): steadier than wall time on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- children ----------------------------------------------------------------------------------------


def child(kind: str, *args: str) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    from dispatcher.instasent.client import InstasentClient
    from dispatcher.keys import Keys
    from dispatcher.sending.batches import BatchOps
    from dispatcher.sending.store import CampaignStore
    from tasks.enqueue import CeleryEnqueuer

    if kind.startswith("report"):
        cid, out, redis_url = args
        from dispatcher.sending.report import build_report, stream_report, write_report

        store = CampaignStore(redis.Redis.from_url(redis_url), Keys("bench"))
        start = time.perf_counter()
        if kind == "report-old":
            write_report(build_report(store, cid), Path(out))
        else:
            stream_report(store, cid, Path(out))
        return {"seconds": time.perf_counter() - start, "rss_mb": _rss_mb()}
    path, sandbox_url, redis_url = args
    settings = _settings(sandbox_url, redis_url)
    client = redis.Redis.from_url(redis_url)
    store, ops = CampaignStore(client, Keys("bench")), BatchOps(client, Keys("bench"))
    print(json.dumps({"started": time.time()}), flush=True)
    start = time.perf_counter()
    with InstasentClient.from_settings(settings) as api:
        if kind == "preflight-old":
            from whole_list import run_preflight

            result = run_preflight(path, _options(), settings=settings, redis=client, client=api)
            return {"seconds": time.perf_counter() - start, "rss_mb": _rss_mb(), "cpu_s": _cpu_s(),
                    "messages": result.valid}
        if kind == "preflight-new":
            from dispatcher.sending.submission import preflight

            result = preflight(path, _options(), settings=settings, redis=client, client=api)
            return {"seconds": time.perf_counter() - start, "rss_mb": _rss_mb(), "cpu_s": _cpu_s(),
                    "messages": result.valid}
        enqueuer = CeleryEnqueuer(settings)
        if kind == "submit-old":
            from whole_list import run_preflight, submit_preflight

            result = run_preflight(path, _options(), settings=settings, redis=client, client=api)
            cid = submit_preflight(store, ops, enqueuer, settings, result=result, options=_options(), name="old")
        else:
            from dispatcher.sending import loading

            marks: dict[str, float] = {}

            def mark(name: str) -> None:
                marks.setdefault(name, time.perf_counter() - start)

            cid, result, _ = loading.create_and_load(
                store, ops, enqueuer, settings, path=path, options=_options(), client=api, name="new",
                one_pass=kind == "submit-new", on_bound=lambda *_: mark("bound_s"),
                on_created=lambda _: mark("created_s"))
            return {"seconds": time.perf_counter() - start, "rss_mb": _rss_mb(), "cpu_s": _cpu_s(), "cid": cid,
                    "messages": result.valid, **marks}
    return {"seconds": time.perf_counter() - start, "rss_mb": _rss_mb(), "cpu_s": _cpu_s(), "cid": cid,
            "messages": result.valid}


def run_child(kind: str, *args: str, on_start: Any = None) -> dict[str, Any]:
    """Run ``kind`` in a fresh interpreter; ``on_start(started_at)`` runs while it works."""
    process = subprocess.Popen([sys.executable, __file__, "--child", kind, *args], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None
    extra: dict[str, Any] = {}
    first = process.stdout.readline() if on_start is not None else ""
    if first:
        extra = on_start(json.loads(first)["started"]) or {}
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"child {kind} failed")
    return {**json.loads(out.strip().splitlines()[-1]), **extra}


def first_accepted(client: redis.Redis, started: float, timeout_s: float = 600) -> dict[str, float]:
    """Seconds from ``started`` until a campaign of this run has a message sent."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        for cid in client.zrange("bench:campaigns", 0, -1):
            if int(client.hget(f"bench:c:{cid.decode()}", "n:sent") or 0) > 0:
                return {"first_bulk_s": time.time() - started}
        time.sleep(0.02)
    return {"first_bulk_s": float("nan")}


def redis_bytes_per_message(path: Path, sandbox_url: str, redis_url: str, kind: str) -> float:
    """Submit ``path`` (``old`` or ``new`` path), wait until every message is sent, measure Redis."""
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    cid = run_child(f"submit-{kind}", str(path), sandbox_url, redis_url)["cid"]
    deadline = time.time() + 900
    while client.hget(f"bench:c:{cid}", "state") != b"completed" and time.time() < deadline:
        time.sleep(0.2)
    total = int(client.hget(f"bench:c:{cid}", "total") or 1)
    # samples=0: every field of a hash counted; the default samples 5 of them and, on a hash that
    # holds one large value among small ones, is off by a factor of 2 either way from run to run.
    used = sum(client.memory_usage(k, samples=0) or 0 for k in client.scan_iter(f"bench:c:{cid}*", count=1000))
    return used / total


# -- the run -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--preflight-rows", type=int, default=1_000_000)
    parser.add_argument("--redis-rows", type=int, default=100_000)
    parser.add_argument("--list", type=Path, help="The --rows list (written when not given).")
    parser.add_argument("--preflight-list", type=Path, help="The --preflight-rows list (written when not given).")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from bench_preflight import write_file

    from dispatcher.dev.services import start_redis, start_sandbox, start_worker

    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    lists = {}
    for name, given, rows in (("submit", args.list, args.rows), ("preflight", args.preflight_list,
                                                                  args.preflight_rows),
                              ("redis", None, args.redis_rows)):
        path = given or work / f"{name}.csv"
        if given is None:
            write_file(path, rows)
        lists[name] = path
    redis_service = start_redis()
    sandbox = start_sandbox("--rate-limit", "0", "--balance", "1e12", token=TOKEN)
    env = {"REDIS_URL": redis_service.url, "INSTASENT_TOKEN": TOKEN, "INSTASENT_BASE_URL": sandbox.url,
           "DISPATCHER_KEY_PREFIX": "bench", "DISPATCHER_QUEUE_WINDOW": "32", "DISPATCHER_ALLOW_VOLATILE_REDIS": "1"}
    client = redis.Redis.from_url(redis_service.url)
    results: dict[str, dict[str, dict[str, Any]]] = {"old": {}, "new": {}, "counted": {}}
    try:
        for kind in ("old", "new"):
            results[kind]["preflight"] = run_child(f"preflight-{kind}", str(lists["preflight"]), sandbox.url,
                                                   redis_service.url, on_start=lambda _: None)
        for kind in ("old", "new", "counted"):
            client.flushall()
            worker = start_worker({**env, "DISPATCHER_RATE_LIMIT": "600"}, concurrency=1)
            try:
                results.setdefault(kind, {})["submit"] = run_child(
                    f"submit-{kind}", str(lists["submit"]), sandbox.url, redis_service.url,
                    on_start=lambda t: first_accepted(client, t))
            finally:
                worker.stop()
            if kind == "counted":  # the fallback order, for its submit figures only
                httpx_reset(sandbox.url)
                continue
            cid = results[kind]["submit"]["cid"]
            results[kind]["report"] = run_child(f"report-{kind}", cid, str(work / f"report-{kind}.csv"),
                                                redis_service.url)
            httpx_reset(sandbox.url)
        worker = start_worker({**env, "DISPATCHER_RATE_LIMIT": str(10**7)}, concurrency=2)
        try:
            for kind in ("old", "new"):
                results[kind]["redis"] = {"bytes": redis_bytes_per_message(lists["redis"], sandbox.url,
                                                                           redis_service.url, kind)}
                httpx_reset(sandbox.url)
        finally:
            worker.stop()
    finally:
        sandbox.stop()
        redis_service.stop()
    show(args, results)


def httpx_reset(url: str) -> None:
    import httpx

    httpx.post(f"{url}/_sandbox/reset", json={"balance": 1e12}, timeout=60).raise_for_status()


def show(args: argparse.Namespace, r: dict[str, dict[str, dict[str, Any]]]) -> None:
    old, new, counted = r["old"], r["new"], r["counted"]["submit"]
    rows = [
        (f"preflight {args.preflight_rows:,} rows (s)", old["preflight"]["seconds"], new["preflight"]["seconds"]),
        ("preflight CPU (s)", old["preflight"]["cpu_s"], new["preflight"]["cpu_s"]),
        ("preflight peak RSS (MB)", old["preflight"]["rss_mb"], new["preflight"]["rss_mb"]),
        (f"submit {args.rows:,} rows (s)", old["submit"]["seconds"], new["submit"]["seconds"]),
        ("submit CPU (s)", old["submit"]["cpu_s"], new["submit"]["cpu_s"]),
        ("submit peak RSS (MB)", old["submit"]["rss_mb"], new["submit"]["rss_mb"]),
        ("first bulk accepted after start (s)", old["submit"]["first_bulk_s"], new["submit"]["first_bulk_s"]),
        (f"report of {args.rows:,} rows to CSV (s)", old["report"]["seconds"], new["report"]["seconds"]),
        ("report peak RSS (MB)", old["report"]["rss_mb"], new["report"]["rss_mb"]),
        (f"Redis bytes/message after sending {args.redis_rows:,}", old["redis"]["bytes"], new["redis"]["bytes"]),
    ]
    print(f"\n{'':44}{'whole list':>12}{'streamed':>12}")
    for label, a, b in rows:
        print(f"{label:44}{a:>12,.1f}{b:>12,.1f}")
    print(f"messages: {old['submit']['messages']:,} (whole list), {new['submit']['messages']:,} (streamed)")
    print(f"streamed submit: bound pass done at {new['submit'].get('bound_s', float('nan')):.1f} s, campaign "
          f"created at {new['submit'].get('created_s', float('nan')):.1f} s")
    print(f"streamed, counting pass first (the fallback order): submit {counted['seconds']:.1f} s, "
          f"CPU {counted['cpu_s']:.1f} s, peak RSS {counted['rss_mb']:,.0f} MB, "
          f"first bulk {counted['first_bulk_s']:.1f} s")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], *sys.argv[3:])))
    else:
        main()
