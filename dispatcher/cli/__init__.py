"""The ``dispatcher`` command line: one Typer app, commands registered by the sibling modules.

Every error a user can cause ends here as one plain sentence on stderr and a non-zero exit code
(2 bad input or usage, 3 refused by a budget guard, 1 anything else); set ``DISPATCHER_DEBUG=1``
to see the traceback instead.
"""

from __future__ import annotations

import os
import sys

import click
import typer

from dispatcher.cli._app import app
from dispatcher.cli._common import describe_unexpected, echo_error
from dispatcher.errors import DispatcherError

# Importing a command module registers its commands on ``app``, in this order in ``--help``.
from dispatcher.cli import sandbox as _sandbox  # noqa: F401  isort: skip
from dispatcher.cli import preflight as _preflight  # noqa: F401  isort: skip
from dispatcher.cli import suppress as _suppress  # noqa: F401  isort: skip
from dispatcher.cli import campaigns as _campaigns  # noqa: F401  isort: skip
from dispatcher.cli import services as _services  # noqa: F401  isort: skip
from dispatcher.cli import schedule as _schedule  # noqa: F401  isort: skip
from dispatcher.cli import webhook as _webhook  # noqa: F401  isort: skip
from dispatcher.cli import console as _console  # noqa: F401  isort: skip
from dispatcher.cli import health as _health  # noqa: F401  isort: skip
from dispatcher.cli import accounts as _accounts  # noqa: F401  isort: skip


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with its code; never lets a traceback reach the user."""
    try:
        result = app(args=argv, standalone_mode=False, prog_name="dispatcher")
    except (typer.TyperException, click.exceptions.ClickException) as exc:
        # typer 0.29 bundles its own click: its usage errors are TyperExceptions, not click's.
        # They are the user's to fix: the command's usage, the error, exit 2.
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            echo_error(str(exc))
        sys.exit(exc.exit_code)
    except (typer.Abort, click.exceptions.Abort, KeyboardInterrupt):
        echo_error("Interrupted.")
        sys.exit(130)
    except (typer.Exit, click.exceptions.Exit) as exc:
        sys.exit(exc.exit_code)
    except DispatcherError as exc:
        if os.environ.get("DISPATCHER_DEBUG"):
            raise
        echo_error(str(exc))
        sys.exit(exc.exit_code)
    except Exception as exc:
        if os.environ.get("DISPATCHER_DEBUG"):
            raise
        message, code = describe_unexpected(exc)
        echo_error(message)
        sys.exit(code)
    sys.exit(result if isinstance(result, int) else 0)
