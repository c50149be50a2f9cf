"""``python -m dispatcher ARGS`` for the tests, forked from a process that has already imported the CLI.

A fresh ``python -m dispatcher`` spends about a second of CPU importing pandas, pyarrow, httpx and the
CLI before it reads its arguments, and the CLI tests start well over a hundred of them. The fork server
imports all that once (per pytest process) and forks a child for each command. The child is what
``python -m dispatcher`` would be after its imports: it takes the command's environment, working
directory, standard streams (stdin ``/dev/null``, stdout and stderr to files) and ``sys.argv``, runs the
``dispatcher`` package as ``__main__`` and ends the way the interpreter ends a script: ``SystemExit``
gives the exit status, any other exception a traceback on stderr and status 1, atexit handlers and
non-daemon threads are waited for.

No preloaded module keeps anything of the server's environment: :mod:`dispatcher` reads its settings
from the environment when a command runs; :mod:`tasks.app`, configured from the environment at import,
is not preloaded (the Celery library is); the server starts without ``COLUMNS`` and ``LINES``, so the
rich consoles :mod:`dispatcher.screens` makes at import read the terminal size from the child's
environment when they print; the child calls ``time.tzset()`` for its ``TZ``. What differs from a fresh
interpreter: the hash seed (shared with the server) and ``sys.path`` (the server's, with the working
directory first). ``pytest --fresh-cli`` runs every command in a fresh interpreter instead.

The server is single-threaded (it forks, so no thread of its own may hold a lock in a child): it
accepts one request a connection (a JSON line), answers the child's PID, and, once the child has
exited, its return code (``-N`` for signal N, as :mod:`subprocess` says it). It exits when its standard
input (a pipe from the pytest process that started it) closes, so it never outlives its pytest process.

Run it as ``python -m tests.forkserver SOCKET``; use it through :func:`run_module`.
"""

from __future__ import annotations

import atexit
import contextlib
import locale
import os
import runpy
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

#: Modules imported once, ahead of every command: everything ``dispatcher.cli`` pulls in, and the
#: Celery library the submitting commands import when they run (not ``tasks.app``: see above).
PRELOADED = ("dispatcher.cli", "dispatcher.cli._common", "dispatcher.resources", "dispatcher.sending.report",
             "dispatcher.sending.summary", "dispatcher.sending.submission", "dispatcher.sending.durability",
             "dispatcher.screens", "dispatcher.preflight.bound", "dispatcher.preflight.pricing",
             "dispatcher.preflight.result", "dispatcher.instasent.client", "dispatcher.console.context",
             "celery", "celery.app.base", "kombu", "openpyxl", "pyarrow.parquet")


# --- The server (its own process) ---------------------------------------------------------------

def _preload() -> None:
    import importlib

    for name in PRELOADED:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _serve(path: str) -> dict[str, Any] | None:
    """Accept requests until stdin closes (then None); in each forked child, return its request."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd hears of exits
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    selector.register(sys.stdin, selectors.EVENT_READ)
    waiting: dict[int, socket.socket] = {}
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        for key, _ in selector.select():
            if key.fileobj is sys.stdin:
                if not os.read(sys.stdin.fileno(), 1024):  # the pytest process is gone
                    return None
            elif key.fileobj is listener:
                conn, _ = listener.accept()
                with conn.makefile("rb") as lines:
                    request = orjson.loads(lines.readline())
                pid = os.fork()
                if pid == 0:  # the child: drop the server's sockets and handlers, run the command
                    selector.close()
                    listener.close()
                    conn.close()
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    os.close(wake_r)
                    os.close(wake_w)
                    return dict(request)
                conn.sendall(orjson.dumps({"pid": pid}) + b"\n")
                waiting[pid] = conn
            else:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_r, 4096):
                        pass
                while waiting:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                    if pid == 0:
                        break
                    conn = waiting.pop(pid, None)
                    if conn is not None:
                        with contextlib.suppress(OSError):
                            conn.sendall(orjson.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + b"\n")
                        conn.close()


def _become(request: dict[str, Any]) -> None:
    """Turn this forked child into ``python -m MODULE ARGS`` run with the request's environment,
    directory and files; returns when the module returns (the interpreter then exits as usual)."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()  # the C library's local zone from the command's TZ, as a fresh interpreter starts with
    for fd, name, flags in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY),
                            (2, request["stderr"], os.O_WRONLY)):
        opened = os.open(name, flags)
        os.dup2(opened, fd)
        os.close(opened)
    sys.path[0] = os.getcwd()  # as `python -m` sets it: the working directory
    sys.argv = ["-m", *request["args"]]
    runpy.run_module(request["module"], run_name="__main__", alter_sys=True)


def main() -> None:
    _preload()
    request = _serve(sys.argv[1])
    if request is not None:
        _become(request)


# --- The client (in the pytest process) ---------------------------------------------------------

class ForkServer:
    """One fork server process, started on first use and stopped when this process exits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._dir = ""

    def _socket(self) -> str:
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._dir = tempfile.mkdtemp(prefix="dispatcher-forkserver-")
                path = str(Path(self._dir) / "socket")
                # Started without the settings of whichever test came first (the children get theirs),
                # and without a terminal size: rich's consoles, made at import, would keep it, where
                # unset they read COLUMNS from the child's environment when they print.
                env = {k: v for k, v in os.environ.items() if not k.startswith(("INSTASENT_", "DISPATCHER_"))
                       and k not in ("REDIS_URL", "CELERY_BROKER_URL", "COLUMNS", "LINES")}
                root = str(Path(__file__).resolve().parent.parent)
                env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
                self._process = subprocess.Popen([sys.executable, "-m", "tests.forkserver", path], env=env,
                                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root)
                assert self._process.stdout is not None
                if self._process.stdout.readline() != b"ready\n":
                    raise RuntimeError("the test fork server did not start")
                atexit.register(self.stop)
            return str(Path(self._dir) / "socket")

    def run(self, module: str, args: list[str], env: dict[str, str], cwd: Path | str | None,
            timeout_s: float) -> subprocess.CompletedProcess[str]:
        """What ``subprocess.run([sys.executable, "-m", module, *args], env=env, cwd=cwd,
        capture_output=True, text=True, timeout=timeout_s)`` answers, from a forked child.

        Raises:
            subprocess.TimeoutExpired: when the command runs longer than ``timeout_s`` (it is killed).
        """
        path = self._socket()
        with tempfile.TemporaryDirectory(prefix="dispatcher-cli-") as scratch:
            out, err = Path(scratch) / "stdout", Path(scratch) / "stderr"
            out.touch()
            err.touch()
            request = {"module": module, "args": list(args), "env": env, "cwd": str(cwd or os.getcwd()),
                       "stdout": str(out), "stderr": str(err)}
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.connect(path)
                conn.sendall(orjson.dumps(request) + b"\n")
                deadline = time.monotonic() + timeout_s
                with conn.makefile("rb") as answers:
                    pid = int(orjson.loads(answers.readline())["pid"])
                    conn.settimeout(max(0.1, deadline - time.monotonic()))
                    try:
                        returncode = int(orjson.loads(answers.readline())["returncode"])
                    except TimeoutError:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                        raise subprocess.TimeoutExpired([module, *args], timeout_s) from None
            encoding = locale.getpreferredencoding(False)  # what text=True decodes with
            with out.open(encoding=encoding) as o, err.open(encoding=encoding) as e:
                stdout, stderr = o.read(), e.read()
        return subprocess.CompletedProcess([sys.executable, "-m", module, *args], returncode, stdout, stderr)

    def stop(self) -> None:
        """Close the server's stdin (it exits) and remove its socket's directory."""
        with self._lock:
            if self._process is not None:
                assert self._process.stdin is not None
                self._process.stdin.close()
                try:
                    self._process.wait(10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(5)
                self._process = None
            if self._dir:
                with contextlib.suppress(OSError):
                    Path(self._dir, "socket").unlink()
                    os.rmdir(self._dir)


#: The pytest process's fork server.
SERVER = ForkServer()
#: True (pytest's ``--fresh-cli``): every command is a fresh interpreter, as a user runs it.
FRESH = False


def run_module(module: str, args: list[str], env: dict[str, str], cwd: Path | str | None = None,
               timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` with exactly ``env`` as its environment, its output captured as text:
    forked from the fork server (see :meth:`ForkServer.run`), or a fresh interpreter when :data:`FRESH`.

    Raises:
        subprocess.TimeoutExpired: when the command runs longer than ``timeout_s`` (it is killed).
    """
    if FRESH:
        return subprocess.run([sys.executable, "-m", module, *args], env=env, cwd=cwd, capture_output=True,
                              text=True, timeout=timeout_s)
    return SERVER.run(module, args, env, cwd, timeout_s)


if __name__ == "__main__":
    main()
