"""Helpers shared by the CLI commands: settings, resources, the enqueuer, error wording."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import redis

from dispatcher.errors import InputError
from dispatcher.resources import Resources
from dispatcher.screens import err
from dispatcher.sending.enqueuer import Enqueuer
from dispatcher.settings import Settings


def echo_error(message: str) -> None:
    """Print one error sentence on stderr."""
    err.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)


def echo_warning(message: str) -> None:
    """Print one warning sentence on stderr."""
    err.print(f"[bold yellow]warning:[/] {message}", markup=True, soft_wrap=True)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and ``.env``, with CLI overrides that are not None."""
    settings = Settings.from_env()
    changes = {k: v for k, v in overrides.items() if v is not None}
    return settings.with_overrides(**changes) if changes else settings


def load_resources(**overrides: Any) -> Resources:
    """:func:`load_settings`, then the Redis client and stores for them (connected lazily)."""
    return Resources.from_settings(load_settings(**overrides))


def load_enqueuer(settings: Settings) -> Enqueuer:
    """The Celery enqueuer for ``settings``; Celery is imported only by the commands that queue work."""
    from tasks.enqueue import CeleryEnqueuer

    return CeleryEnqueuer(settings)


def writable_output(path: Path) -> Path:
    """Check, before any work is done (or paid for), that a file can be written at ``path``.

    Raises:
        InputError: when its folder does not exist or is not writable, or ``path`` is a folder.
    """
    folder = path.parent
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder; give a file name such as {path / 'out.csv'}.")
    if not folder.is_dir():
        raise InputError(f"cannot write {path}: the folder {folder} does not exist; create it or choose "
                         "another path.")
    if not os.access(folder, os.W_OK):
        raise InputError(f"cannot write {path}: the folder {folder} is not writable.")
    return path


def describe_unexpected(exc: BaseException) -> tuple[str, int]:
    """Turn an exception we did not raise on purpose into one sentence and an exit code."""
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return (
            "cannot reach Redis: start a Redis server or set REDIS_URL to one that is running "
            f"({type(exc).__name__}).",
            1,
        )
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {exc.filename}.", 2
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename}.", 2
    if isinstance(exc, OSError) and exc.filename:
        return f"cannot use {exc.filename}: {exc.strerror}.", 2
    print_tip = "set DISPATCHER_DEBUG=1 and run again to see the details"
    return f"unexpected {type(exc).__name__}: {exc}; {print_tip}.", 1
