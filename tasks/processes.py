"""Run ``N`` Celery workers forked after the heavy imports: ``python -m tasks.processes N ARGS``
(``dispatcher worker --processes N``).

One worker process sends at most as fast as one core runs Python (the GIL). On a host with idle
cores (a dedicated worker host, Redis and Instasent elsewhere) ``N`` processes can use them; on a
host that runs Redis and the sandbox too, two were not reliably faster than one
(``docs/benchmarks.md``, "More processes per host"). This
supervisor imports the app and everything a batch needs (Celery, pandas, pyarrow, httpx, ...)
once, freezes those objects out of the garbage collector, then forks
``N`` children that each run ``celery worker ARGS`` with the threads pool and its own pump. The
imported pages stay shared copy-on-write, so ``N`` processes cost far less memory than ``N``
separate workers. Each child is an ordinary Celery worker (its own node name, heartbeat, start
checks and clients, all built after the fork); the supervisor only forwards SIGTERM/SIGINT/SIGQUIT
and, when one child exits, stops the others and exits with the first non-zero status.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

#: Signals the supervisor passes on to every child (Celery: warm shutdown, or cold for SIGQUIT).
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def child_argv(args: Sequence[str], index: int) -> list[str]:
    """``args`` with a node name of child ``index``'s own: ``--hostname NAME@HOST`` gets ``-INDEX``.

    Without ``--hostname`` the name is ``dispatcher-PID@%h`` (PID: the supervisor's), so that two
    children never share RabbitMQ's exclusive pidbox queue.
    """
    out = list(args)
    for i, arg in enumerate(out[:-1]):
        if arg in ("--hostname", "-n"):
            name, at, host = out[i + 1].partition("@")
            out[i + 1] = f"{name}-{index}{at}{host}"
            return out
    return [*out, "--hostname", f"dispatcher-{os.getpid()}-{index}@%h"]


def _preload() -> None:
    """Import what a sending process needs, so that the children share it instead of each loading it."""
    from celery.apps import worker  # noqa: F401
    from celery.concurrency import thread  # noqa: F401

    import tasks.app
    import tasks.dispatch
    import tasks.schedules
    import tasks.watchdog  # noqa: F401


def _run_child(args: Sequence[str], index: int) -> int:
    from tasks.app import app

    for signum in FORWARDED:
        signal.signal(signum, signal.SIG_DFL)  # Celery installs its own handlers
    try:
        app.worker_main(["worker", *child_argv(args, index)])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def supervise(processes: int, args: Sequence[str]) -> int:
    """Fork ``processes`` Celery workers with ``args``; returns the exit status (0: all ended cleanly)."""
    _preload()
    gc.collect()
    gc.freeze()  # keep the collector from touching (and so copying) the shared objects in each child
    children: dict[int, int] = {}
    for index in range(processes):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _run_child(args, index)
            finally:
                os._exit(code)
        children[pid] = index

    def forward(signum: int, _frame: FrameType | None) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM if signum == signal.SIGINT else signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    status = 0
    while children:
        try:
            pid, raw = os.wait()
        except ChildProcessError:
            break
        children.pop(pid, None)
        code = os.waitstatus_to_exitcode(raw)
        if code != 0 and status == 0:
            status = code if code > 0 else 128 - code
        forward(signal.SIGTERM, None)  # one child gone: the host stops as a whole (a supervisor restarts it)
    return status


def main(argv: Sequence[str]) -> int:
    """``python -m tasks.processes N ARGS...``: ``N`` workers, each ``celery worker ARGS``."""
    if not argv or not argv[0].isdigit() or int(argv[0]) < 1:
        print("usage: python -m tasks.processes N [celery worker options]", file=sys.stderr)
        return 2
    return supervise(int(argv[0]), argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
