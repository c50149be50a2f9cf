"""Process commands: ``worker``, ``flower`` and ``demo``."""

from __future__ import annotations

import ipaddress
import os

import typer

from dispatcher.cli._app import app
from dispatcher.cli._common import load_settings
from dispatcher.dev.services import beat_argv, flower_argv, worker_argv
from dispatcher.errors import ConfigurationError


@app.command()
def worker(
    concurrency: int | None = typer.Option(
        None, "--concurrency", "-c", min=1,
        help="Batches in flight at most (default: as many as the rate limit and the observed latency need)."),
    pool: str = typer.Option("threads", help="Celery pool: threads (default) or prefork (one batch per process)."),
    processes: int = typer.Option(
        1, "--processes", min=1,
        help="Celery worker processes, forked after the imports (e.g. one per core on a dedicated host)."),
    events: bool = typer.Option(True, "--events/--no-events",
                                help="Send task events (Flower's task views need them; they cost throughput)."),
    loglevel: str = typer.Option("INFO", help="Celery log level."),
) -> None:
    """Start a Celery worker with the project's settings (a thin wrapper over `celery worker`)."""
    from dispatcher.resources import Resources
    from dispatcher.sending.durability import check_persistence

    if pool not in ("threads", "prefork"):
        raise typer.BadParameter("choose threads or prefork", param_hint="--pool")
    settings = load_settings()
    settings.require_token()  # fail early, in one sentence, on a bad environment
    settings.check_lease()
    check_persistence(Resources.from_settings(settings).redis, settings)
    argv = worker_argv(concurrency, events, pool=pool, loglevel=loglevel, queue=settings.task_queue,
                       processes=processes)
    os.execv(argv[0], argv)


@app.command()
def flower(
    port: int = typer.Option(5555, help="TCP port."),
    address: str = typer.Option("127.0.0.1", help="Interface to listen on (loopback by default)."),
) -> None:
    """Start Flower on loopback; basic auth from FLOWER_USER and FLOWER_PASSWORD when both are set."""
    settings = load_settings()
    if settings.flower_user and settings.flower_password:
        os.environ["FLOWER_BASIC_AUTH"] = f"{settings.flower_user}:{settings.flower_password.reveal()}"
    elif not is_loopback(address):
        raise ConfigurationError(f"Flower on {address} would show every task to anyone who can reach it: set "
                                 "FLOWER_USER and FLOWER_PASSWORD, or keep the default --address 127.0.0.1.")
    argv = flower_argv(port, address)
    os.execv(argv[0], argv)


def is_loopback(address: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


@app.command()
def beat(loglevel: str = typer.Option("INFO", help="Celery log level.")) -> None:
    """Start celery beat with the redbeat scheduler (schedules in Redis; two beats at once are safe)."""
    load_settings()
    argv = beat_argv(loglevel)
    os.execv(argv[0], argv)


@app.command()
def demo(
    file: str = typer.Option("examples/campaign.csv", help="Recipient list to send."),
    workers: int = typer.Option(2, help="Worker processes."),
    flower_port: int = typer.Option(5555, help="Flower's port (a free one is used if taken)."),
    keep_running: bool = typer.Option(False, "--keep-running", help="Keep Flower and the rest up until Ctrl-C."),
    schedule: bool = typer.Option(False, "--schedule", help="Also run beat and show a recurring campaign firing."),
) -> None:
    """Run a real campaign end to end on this machine: Redis, sandbox, workers, Flower, progress, report."""
    from dispatcher.dev.demo import run_demo

    run_demo(file=file, workers=workers, flower_port=flower_port, keep_running=keep_running, schedule=schedule)
