"""Dispatch pace and cost: one worker host against the sandbox at 0, 50, 200 and 500 ms of latency.

For each latency the sandbox enforces the rate limit a real account would have (6,000 bulk
requests/min up to 200 ms, 1,200/min at 500 ms) and each worker configuration sends one campaign
for ``--seconds``. Printed per run:

* the pace, as a share of the configured limit, from the sandbox's own request log (the busiest
  10 s window too, which must stay within the limit), and the number of 429s;
* CPU-seconds per 1,000 messages of the worker host (every process of it), Redis and the sandbox;
* the peak RSS and PSS of the worker host (all its processes together; PSS counts a page
  shared by several processes once, so it is the figure to read for forked processes).

``--profile-dir DIR`` also writes a py-spy profile (collapsed stacks, GIL-holding samples) of
each run's worker host there. ``two-hosts`` runs two worker hosts sharing the limit,
``two-processes`` one host of two forked workers (``dispatcher worker --processes 2``).

At no latency the limit is off and a campaign of ``--messages`` is timed to completion beside a
bare httpx loop POSTing the same bulks in the same run (the ratio is the figure to read: this
machine's speed drifts by 20-40 % over minutes). Configurations: ``defaults`` is
``dispatcher worker`` as shipped; ``prefork-2`` is the model before issue 13 (prefork, 2
processes, one batch per process), kept as the baseline of the same run.

Run: ``.venv/bin/python bench/bench_dispatch.py [--latencies 0 200] [--configs defaults prefork-2]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import orjson
import pandas as pd
import psutil
import redis
from whole_list import submit_prepared  # this folder: a script's own

from dispatcher.dev.services import (
    Service,
    free_port,
    redis_reachable,
    redis_server_binary,
    spawn,
    start_redis,
    start_sandbox,
    wait_until,
    worker_argv,
)
from dispatcher.instasent.client import MAX_BULK_ITEMS
from dispatcher.keys import Keys
from dispatcher.sending import campaigns
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.store import CampaignStore
from dispatcher.settings import Settings
from tasks.enqueue import CeleryEnqueuer

TOKEN = "bench-token"
#: Bulk requests per minute the sandbox allows at each latency (ms); 0 = no limit.
LIMITS = {0: 0, 50: 6000, 200: 6000, 500: 1200}
_BASELINE = [sys.executable, "-m", "celery", "-A", "tasks.app", "worker", "--loglevel", "INFO", "-Q", "dispatcher",
             "--without-gossip", "--without-mingle", "--task-events"]
#: Baseline configurations fed one ``send_batch`` task per batch (checkouts before the pump).
ONE_TASK_PER_BATCH = {"baseline", "baseline-threads-32", "baseline-gevent-64"}
#: Worker command lines by configuration name.
CONFIGS: dict[str, list[str]] = {
    "defaults": worker_argv(),
    "prefork-2": worker_argv(concurrency=2, pool="prefork"),
    # The code and defaults of another checkout (``--baseline-dir``, e.g. ``git archive main``):
    # ``dispatcher worker`` as it was, fed one ``send_batch`` task per batch.
    "baseline": [*_BASELINE, "--concurrency", "2"],
    # The same checkout on Celery's other pools: many slots, still one batch per task.
    "baseline-threads-32": [*_BASELINE, "--pool", "threads", "--concurrency", "32"],
    "baseline-gevent-64": [*_BASELINE, "--pool", "gevent", "--concurrency", "64"],
    # The baseline checkout's own ``dispatcher worker`` defaults, fed grouped tasks (its code must
    # have them: an A/B of the sending code under one execution model).
    "baseline-defaults": worker_argv(),
    # This checkout's ``dispatcher worker --processes 2``: two workers forked after the imports.
    "two-processes": worker_argv(processes=2),
    # Two worker hosts (two ``dispatcher worker`` processes with their defaults) sharing one limit.
    "two-hosts": worker_argv(),
    "threads-32": worker_argv(concurrency=32, pool="threads"),
    # ``defaults`` with DISPATCHER_REDIS_MIN_REPLICAS=1: each POST waits for a replica to acknowledge
    # its claim (issue 23); run it beside ``defaults`` with ``--replica`` (both then have a replica).
    "replica-wait": worker_argv(),
}
#: Extra worker environment by configuration name.
CONFIG_ENV: dict[str, dict[str, str]] = {"replica-wait": {"DISPATCHER_REDIS_MIN_REPLICAS": "1"}}


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


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and all its live descendants."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def tree_rss(pid: int) -> tuple[int, int]:
    """(RSS, PSS) bytes of a process and all its live descendants.

    PSS splits each page shared by several processes (the pages a forked child shares with its
    parent) among them, so the sum is the memory the tree really holds; RSS counts them in each.
    """
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    rss = pss = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            info = proc.memory_full_info()
            rss += info.rss
            pss += info.pss
    return rss, pss


class PeakRss:
    """Samples a process tree's RSS every 0.2 s in a thread; ``peak`` is the highest seen (bytes)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid  # one host: with two, the figure is the first host's
        self.peak = 0
        self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, pss = tree_rss(self.pid)
            self.peak, self.peak_pss = max(self.peak, rss), max(self.peak_pss, pss)
            self._stop.wait(0.2)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


@dataclass
class Run:
    """One campaign sent by one worker configuration at one latency."""

    latency_ms: int
    config: str
    limit_per_min: int
    messages: int = 0
    seconds: float = 0.0
    pace_share: float = 0.0
    busiest_10s_share: float = 0.0
    throttled: int = 0
    cpu_per_1000: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    peak_pss_mb: float = 0.0

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


class Bench:
    """The services of one benchmark run and the campaigns sent through them."""

    def __init__(self, redis_service: Service, sandbox: Service) -> None:
        self.redis_service, self.sandbox = redis_service, sandbox
        self.client = redis.Redis.from_url(redis_service.url)
        keys = Keys("bench")
        self.store, self.ops = CampaignStore(self.client, keys), BatchOps(self.client, keys)
        self.offset = 0
        self.baseline_dir = ""
        #: Where py-spy writes a collapsed-stack profile of every run's worker host ("": no profile).
        self.profile_dir = ""

    def settings(self, limit: int) -> Settings:
        return Settings.from_env(environ={}, env_file=None).with_overrides(
            instasent_token=TOKEN, instasent_base_url=self.sandbox.url, redis_url=self.redis_service.url,
            key_prefix="bench", rate_limit_per_min=limit or 10**7)

    def frame(self, n: int) -> pd.DataFrame:
        self.offset += n
        return recipients(n, self.offset - n)

    def configure_sandbox(self, latency_ms: int, limit: int) -> None:
        http = httpx.Client(base_url=self.sandbox.url, timeout=60)
        http.post("/_sandbox/reset", json={"balance": 1e12, "rate_limit_per_min": limit}).raise_for_status()
        http.post("/_sandbox/faults", json={"latency_ms": latency_ms}).raise_for_status()

    def requests_log(self, since: float) -> list[dict[str, float]]:
        rows: list[dict[str, float]] = []
        while True:
            page = httpx.get(f"{self.sandbox.url}/_sandbox/requests",
                             params={"since": since, "offset": len(rows), "limit": 100_000}, timeout=60).json()
            batch = [r for r in page["requests"]]
            rows += batch
            if len(batch) < 100_000:
                return [r for r in rows if r["endpoint"] == "POST /sms/bulk"]

    def start_worker(self, config: str, limit: int) -> Service:
        extra: dict[str, str] = {}
        if config.startswith("baseline"):
            extra = {"PYTHONPATH": self.baseline_dir, "PYTHONDONTWRITEBYTECODE": "1"}
        if config in ONE_TASK_PER_BATCH:
            extra["DISPATCHER_QUEUE_WINDOW"] = "16"
        extra.update(CONFIG_ENV.get(config, {}))
        env = {**extra, "REDIS_URL": self.redis_service.url, "INSTASENT_TOKEN": TOKEN,
               "INSTASENT_BASE_URL": self.sandbox.url,
               "DISPATCHER_RATE_LIMIT": str(limit or 10**7), "DISPATCHER_KEY_PREFIX": "bench",
               "DISPATCHER_ALLOW_VOLATILE_REDIS": "1"}
        argv = CONFIGS[config]
        if config.startswith("baseline"):  # run in the other checkout so its packages shadow ours
            argv = ["/bin/sh", "-c", 'cd "$0" && exec "$@"', self.baseline_dir, *argv]
        service = spawn("worker", argv, url="", env=env)
        wait_until(lambda: "ready." in service.log_tail(200), service, timeout_s=120)
        return service

    def submit_baseline(self, config: str, settings: Settings, frame: pd.DataFrame) -> str:
        """Store and queue the campaign with the baseline checkout's own code (its batches' layout
        and its tasks), in a child process; returns the campaign id."""
        with tempfile.NamedTemporaryFile(suffix=".pkl") as f:
            frame.to_pickle(f.name)
            env = {**os.environ, "PYTHONPATH": self.baseline_dir, "PYTHONDONTWRITEBYTECODE": "1"}
            argv = [sys.executable, "-c", _BASELINE_SUBMIT, f.name, config, str(settings.rate_limit_per_min),
                    self.sandbox.url, self.redis_service.url, "1" if config in ONE_TASK_PER_BATCH else "0"]
            out = subprocess.run(argv, cwd=self.baseline_dir, env=env, check=True, capture_output=True, text=True)
        return out.stdout.strip().splitlines()[-1]

    def cpu(self, workers: list[Service]) -> dict[str, float]:
        return {"workers": sum(tree_cpu(w.pid) for w in workers), "redis": tree_cpu(self.redis_service.pid),
                "sandbox": tree_cpu(self.sandbox.pid)}

    def run(self, config: str, latency_ms: int, seconds: float, messages: int) -> Run:
        """Send one campaign; with a limit, measure ``seconds`` of steady sending, else time it to the end."""
        limit = LIMITS[latency_ms]
        self.configure_sandbox(latency_ms, limit)
        result = Run(latency_ms, config, limit)
        workers = [self.start_worker(config, limit) for _ in range(2 if config == "two-hosts" else 1)]
        worker = workers[0]
        rss = PeakRss(worker.pid)
        settings = self.settings(limit)
        spy: subprocess.Popen[bytes] | None = None
        try:
            size = messages if not limit else int(limit / 60 * MAX_BULK_ITEMS * (seconds + 15))
            frame = self.frame(size)
            if config.startswith("baseline"):
                campaign_id = self.submit_baseline(config, settings, frame)
            else:
                campaign_id = submit_prepared(self.store, self.ops, CeleryEnqueuer(settings), settings, name=config,
                                      messages=frame)
            deadline = time.monotonic() + 60
            while self.store.get(campaign_id).counts["sent"] == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            if limit:
                time.sleep(2.0)  # past the start-up: the pace is a steady-state figure
            if self.profile_dir:
                spy = profile(worker.pid, os.path.join(self.profile_dir, f"{config}-{latency_ms}ms.txt"))
            before, t0, sent0 = self.cpu(workers), time.time(), self.store.get(campaign_id).counts["sent"]
            if limit:
                time.sleep(seconds)
                info = self.store.get(campaign_id)
            else:
                while (info := self.store.get(campaign_id)).state != "completed":
                    if info.state in ("paused", "failed"):
                        raise RuntimeError(f"bench campaign stopped: {info}")
                    time.sleep(0.02)
            after, t1 = self.cpu(workers), time.time()
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
            result.messages, result.seconds = info.counts["sent"] - sent0, t1 - t0
            result.cpu_per_1000 = {k: (after[k] - before[k]) / max(1, result.messages) * 1000 for k in after}
            stamps = sorted(r["t"] for r in self.requests_log(t0) if r["t"] <= t1)
            result.throttled = sum(1 for r in self.requests_log(0) if r["status"] == 429)
            if limit and len(stamps) > 1:
                result.pace_share = (len(stamps) - 1) / (stamps[-1] - stamps[0]) * 60 / limit
                all_stamps = sorted(r["t"] for r in self.requests_log(0))
                result.busiest_10s_share = busiest(all_stamps, 10.0) / (limit / 6)
            if limit:
                campaigns.cancel(self.store, self.ops, campaign_id, ttl_s=60)
        finally:
            for each in workers:
                each.stop(timeout_s=30)
            result.peak_rss_mb = rss.stop() / 2**20
            result.peak_pss_mb = rss.peak_pss / 2**20
        return result


def profile(pid: int, out: str) -> subprocess.Popen[bytes]:
    """Start py-spy sampling a process tree (CPU only) into ``out`` (collapsed stacks, until SIGINT)."""
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    # --gil: only samples holding the GIL, i.e. the process's CPU (one interpreter: one core at most).
    argv = [spy, "record", "--pid", str(pid), "--subprocesses", "--format", "raw", "--rate", "200", "--gil",
            "--nonblocking", "-o", out]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# Run by ``Bench.submit_baseline`` inside the baseline checkout: argv = frame pickle, name, limit,
# sandbox URL, Redis URL, one task per batch (1/0); prints the campaign id.
_BASELINE_SUBMIT = """
import sys
import pandas as pd
from dispatcher.keys import Keys
from dispatcher.sending import campaigns
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.store import CampaignStore
from dispatcher.settings import Settings
from tasks.enqueue import CeleryEnqueuer
import redis
path, name, limit, sandbox, url, one_task = sys.argv[1:]
settings = Settings.from_env(environ={}, env_file=None).with_overrides(
    instasent_token="bench-token", instasent_base_url=sandbox, redis_url=url, key_prefix="bench",
    rate_limit_per_min=int(limit))
if one_task == "1":
    settings = settings.with_overrides(queue_window=16)
    class Enqueuer(CeleryEnqueuer):
        def enqueue(self, campaign_id, numbers, *, countdown=None, tries=0):
            with self._app.producer_or_acquire() as producer:
                for n in numbers:
                    self._app.send_task("dispatcher.send_batch", args=(campaign_id, n), producer=producer,
                                        countdown=countdown)
else:
    Enqueuer = CeleryEnqueuer
client = redis.Redis.from_url(url)
keys = Keys("bench")
print(campaigns.submit(CampaignStore(client, keys), BatchOps(client, keys), Enqueuer(settings), settings, name=name,
                       messages=pd.read_pickle(path)))
"""


def busiest(stamps: Sequence[float], width_s: float) -> int:
    """Most timestamps inside any window of ``width_s`` seconds (``stamps`` sorted)."""
    best, lo = 0, 0
    for hi, t in enumerate(stamps):
        while t - stamps[lo] >= width_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def report(runs: list[Run], bare: list[float]) -> None:
    print("\nDispatch by one worker host (machine shared and loaded: read the ratios)")
    print(f"{'latency':>8} {'config':<20}{'limit/min':>10}{'msgs/s':>9}{'pace':>7}{'10s max':>9}{'429':>5}"
          f"{'vs bare':>9}  {'CPU s/1000 msgs: workers redis sandbox':<40}{'peak RSS':>9}{'PSS':>7}")
    base = statistics.median(bare) if bare else 0.0
    for r in runs:
        pace = f"{r.pace_share:6.0%}" if r.limit_per_min else "     -"
        window = f"{r.busiest_10s_share:8.0%}" if r.limit_per_min else "       -"
        ratio = f"{r.rate / base:8.2f}x" if not r.limit_per_min and base else "        -"
        cpu = r.cpu_per_1000
        print(f"{r.latency_ms:>6}ms {r.config:<20}{r.limit_per_min or 'off':>10}{r.rate:>9,.0f}{pace:>7}{window}"
              f"{r.throttled:>5}{ratio}  {cpu['workers']:>7.3f} {cpu['redis']:>7.3f} {cpu['sandbox']:>7.3f}"
              f"{'':<16}{r.peak_rss_mb:>7.0f}MB{r.peak_pss_mb:>5.0f}MB")
    if bare:
        print(f"bare httpx loop (no latency): {base:,.0f} msgs/s (median of {len(bare)})")


def start_replica(master: Service) -> Service:
    """A non-persistent replica of ``master`` on a free loopback port, in sync before it returns."""
    port = free_port()
    master_port = master.url.rsplit(":", 1)[1].split("/")[0]
    url = f"redis://127.0.0.1:{port}/0"
    replica = spawn("replica", [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", tempfile.mkdtemp(), "--replicaof", "127.0.0.1",
                                master_port], url)
    wait_until(lambda: redis_reachable(url, 0.2)
               and redis.Redis.from_url(url).info("replication").get("master_link_status") == "up",
               replica, timeout_s=30)
    return replica


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=50_000, help="campaign size at no latency")
    parser.add_argument("--seconds", type=float, default=20.0, help="steady sending measured per limited run")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--latencies", type=int, nargs="+", default=[0, 50, 200, 500], choices=sorted(LIMITS))
    parser.add_argument("--configs", nargs="+", default=["defaults", "baseline"], choices=sorted(CONFIGS))
    parser.add_argument("--baseline-dir", default=os.environ.get("BENCH_BASELINE_DIR", ""),
                        help="checkout the 'baseline' configuration runs (e.g. `git archive main | tar -x -C DIR`)")
    parser.add_argument("--replica", action="store_true",
                        help="attach a replica to the bench's Redis (for the 'replica-wait' configuration)")
    parser.add_argument("--profile-dir", default="", help="write a py-spy profile of each run's workers there")
    args = parser.parse_args()
    services: list[Service] = []
    runs: list[Run] = []
    bare: list[float] = []
    try:
        services.append(redis_service := start_redis())
        if args.replica:
            services.append(start_replica(redis_service))
        services.append(sandbox := start_sandbox("--rate-limit", "0", "--balance", "1e12", token=TOKEN))
        bench = Bench(redis_service, sandbox)
        bench.baseline_dir = os.path.abspath(args.baseline_dir) if args.baseline_dir else ""
        bench.profile_dir = args.profile_dir
        if args.profile_dir:
            os.makedirs(args.profile_dir, exist_ok=True)
        if not bench.baseline_dir:
            args.configs = [c for c in args.configs if not c.startswith("baseline")]
            print("(no --baseline-dir: the 'baseline' configuration is skipped)")
        for latency in args.latencies:
            for _ in range(args.repeat):
                for config in args.configs:  # interleaved, so drift hits every configuration alike
                    runs.append(bench.run(config, latency, args.seconds, args.messages))
                    print(f"  {latency} ms {config}: {runs[-1].rate:,.0f} msgs/s, pace {runs[-1].pace_share:.0%}",
                          flush=True)
                if latency == 0:
                    bench.configure_sandbox(0, 0)
                    bare.append(bare_httpx(sandbox.url, bench.frame(20_000)))
        report(runs, bare)
    finally:
        for service in reversed(services):
            service.stop()


if __name__ == "__main__":
    main()
