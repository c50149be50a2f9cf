"""``dispatcher demo`` (``make run``): one real campaign end to end on this machine.

It uses ``REDIS_URL`` when a server answers there, else starts a private ``redis-server``; starts
the sandbox (with a few injected faults, so retries and reconciliation show), two Celery worker
processes and Flower, all on loopback; preflights and submits the example list; shows the live
progress bar; prints the summary and writes the report. Everything it started is stopped on exit,
Ctrl-C, SIGTERM and SIGHUP included.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from dispatcher.dev.services import (
    Service,
    ensure_redis,
    free_port,
    start_beat,
    start_flower,
    start_sandbox,
    start_webhook,
    start_worker,
)
from dispatcher.errors import InputError
from dispatcher.preflight.result import PreflightOptions
from dispatcher.resources import Resources
from dispatcher.screens import (
    lookup_progress,
    out,
    print_schedules,
    print_status,
    print_summary,
    redact_url,
    show_progress,
)
from dispatcher.sending.health import WorkerRegistry
from dispatcher.sending.report import build_report, write_report
from dispatcher.sending.schedules.admin import schedule_rows
from dispatcher.sending.submission import SubmitOptions, submit
from dispatcher.settings import DEFAULT_REDIS_URL, Settings

#: Token shared by the demo's sandbox and workers (a local, throwaway value).
DEMO_TOKEN = "demo-token"
#: Where the demo writes its logs and report.
OUT_DIR = Path("out")
#: The demo message: every column it names is in ``examples/campaign.csv``.
DEMO_TEXT = "Hola {name}! Tu código {code} te da un 20% en nuestra tienda de {city}. Responde STOP para baja."
#: Requests per minute per endpoint, for the sandbox and the workers alike.
DEMO_RATE_LIMIT = 1200


def _port_or_free(port: int) -> int:
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) != 0:
            return port
    return free_port()


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def _services() -> Iterator[list[Service]]:
    """A list to add started services to; each is stopped on the way out, whether by an error,
    Ctrl-C, or SIGTERM/SIGHUP (``kill``, a closed terminal), which are handled like Ctrl-C."""
    started: list[Service] = []
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield started
    finally:
        for sig in previous:  # a second signal must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        for service in reversed(started):
            service.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_demo(file: str = "examples/campaign.csv", workers: int = 2, flower_port: int = 5555,
             keep_running: bool = False, schedule: bool = False) -> None:
    """Run the demo campaign; see the module docstring.

    Raises:
        InputError: when the example file is missing.
    """
    path = Path(file)
    if not path.exists():
        raise InputError(f"{file} does not exist; run the demo from the repository root.")
    logs = OUT_DIR / "demo-logs"
    with _services() as started:
        out.print("[bold]dispatcher demo[/]: starting Redis, the Instasent sandbox, workers and Flower...")
        redis_url, redis_service = ensure_redis(os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL, log_dir=logs)
        if redis_service:
            started.append(redis_service)
        secret = secrets.token_urlsafe(24)
        receiver = start_webhook({"REDIS_URL": redis_url, "DISPATCHER_KEY_PREFIX": "dsp-demo",
                                  "DISPATCHER_WEBHOOK_SECRET": secret, "DISPATCHER_ALLOW_VOLATILE_REDIS": "1"},
                                 log_dir=logs)
        started.append(receiver)
        sandbox = start_sandbox("--rate-limit", str(DEMO_RATE_LIMIT), "--error-rate", "0.03",
                                "--error-after-accept-rate", "0.03", "--seed", "7", "--latency-ms", "40",
                                "--dlr-url", f"{receiver.url}/dlr/{secret}", "--dlr-delay-s", "0.3",
                                "--dlr-failed-rate", "0.04", "--dlr-expired-rate", "0.02",
                                "--dlr-duplicate-rate", "0.1", "--dlr-early-rate", "0.05",
                                token=DEMO_TOKEN, log_dir=logs)
        started.append(sandbox)
        env = {"REDIS_URL": redis_url, "INSTASENT_TOKEN": DEMO_TOKEN, "INSTASENT_BASE_URL": sandbox.url,
               "DISPATCHER_RATE_LIMIT": str(DEMO_RATE_LIMIT), "DISPATCHER_KEY_PREFIX": "dsp-demo",
               "DISPATCHER_RETRY_BACKOFF": "0.2", "DISPATCHER_RECONCILE_DELAY": "0.5",
               "DISPATCHER_QUEUE_WINDOW": "4", "CELERY_BROKER_URL": redis_url,
               # The demo's Redis is a throwaway one that does not persist.
               "DISPATCHER_ALLOW_VOLATILE_REDIS": "1"}
        os.environ.update(env)
        started.append(start_worker(env, concurrency=workers, events=True, log_dir=logs))
        flower = start_flower(env, port=_port_or_free(flower_port), log_dir=logs)
        started.append(flower)
        out.print(f"Redis {redact_url(redis_url)} · sandbox {sandbox.url} · {workers} worker processes · "
                  f"Flower {flower.url} · delivery reports to {receiver.url}/dlr/<secret>")
        settings = Settings.from_env(env_file=None)
        _campaign(settings, path, flower.url)
        if schedule:
            started.append(start_beat(env, log_dir=logs))
            _schedule(settings, path)
        if keep_running:
            out.print(f"Flower stays up at {flower.url} until you press Ctrl-C.")
            with contextlib.suppress(KeyboardInterrupt):
                flower.process.wait()


def _campaign(settings: Settings, path: Path, flower_url: str) -> None:
    from tasks.enqueue import CeleryEnqueuer  # the Celery side: dev tools may import it, the library never does

    resources = Resources.from_settings(settings)
    store = resources.store
    # HLR lookups cost money, so `preflight` and `submit` make them only with --hlr (or a yes at a
    # terminal); the demo asks for them explicitly, against the sandbox's free lookups.
    options = SubmitOptions(PreflightOptions(text=DEMO_TEXT, sender="DEMOSHOP", country="ES", hlr=True),
                            name="demo: spring offer").validated()
    out.print("HLR lookups on (the demo asks for them; `preflight` and `submit` need --hlr to pay for lookups).")

    def created(campaign_id: str) -> None:
        out.print(f"\nSubmitted campaign [bold]{campaign_id}[/]; sending while the list loads...")

    # The path of `dispatcher submit`: the cost bound and the guard, then one pass whose batches the
    # workers send as each chunk is stored (the summary is shown at its end).
    with lookup_progress() as progress:
        campaign_id, _, _ = submit(store, resources.ops, CeleryEnqueuer(settings), settings, path, options,
                                   progress=progress, on_counted=print_summary, on_created=created)
    info = show_progress(store, WorkerRegistry(resources.redis, resources.keys), campaign_id)
    out.print("Waiting for the delivery reports...")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        info = store.get(campaign_id)
        if info.delivery["delivered"] + info.delivery["undelivered"] >= info.counts["sent"]:
            break
        time.sleep(0.3)
    print_status(info)
    OUT_DIR.mkdir(exist_ok=True)
    report_path = OUT_DIR / f"demo-report-{campaign_id}.csv"
    write_report(build_report(store, campaign_id), report_path)
    out.print(f"Report: {report_path} (one row per message) · Flower: {flower_url} · "
              f"logs in {OUT_DIR / 'demo-logs'}")


def _schedule(settings: Settings, path: Path, every_s: float = 8.0, firings: int = 2) -> None:
    """Add a recurring campaign, let beat fire it ``firings`` times, show the schedule list, remove it."""
    import tasks.schedules as glue  # the Celery side: dev tools may import it, the library never does
    from dispatcher.sending.schedules.definition import ScheduleDef

    resources = Resources.from_settings(settings)
    schedules, store = resources.schedules, resources.store
    definition = ScheduleDef(name="demo-recurring", file=str(path.resolve()), every_s=every_s,
                             options={"text": DEMO_TEXT, "sender": "DEMOSHOP", "country": "ES"},
                             window="00:00-23:59", expire_after_s=3600).validated()
    # A schedule's firing records outlive it: an earlier demo's on the same Redis are not this one's.
    started = time.time()
    schedules.save(definition)
    glue.save_entry(definition)
    out.print(f"\n[bold]Recurring campaign[/]: schedule {definition.name} fires every {every_s:g} s "
              f"(beat + redbeat); waiting for {firings} firings...")
    try:
        deadline = time.monotonic() + every_s * (firings + 4)
        while time.monotonic() < deadline:
            created = [r for r in schedules.runs(definition.name) if r.outcome == "created" and r.at >= started]
            if len(created) >= firings and all(store.get(r.campaign).state == "completed" for r in created):
                break
            time.sleep(0.5)
        print_schedules(schedule_rows(schedules))
        for run in reversed([r for r in schedules.runs(definition.name) if r.at >= started]):
            detail = ""
            if run.campaign:
                info = store.get(run.campaign)
                detail = f"campaign {run.campaign}: {info.state}, {info.counts['sent']} sent"
            out.print(f"  firing at {time.strftime('%H:%M:%S', time.localtime(run.at))}: {run.outcome} "
                      f"{detail or run.reason}")
    finally:
        schedules.remove(definition.name)
        glue.delete_entry(definition.name)
