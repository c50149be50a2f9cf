"""Run the console with uvicorn, under the deadlines and the connection cap of :mod:`dispatcher.serving`.

The access log stays on, with query strings cut out of it (a refused ``?token=`` is never written).
"""

from __future__ import annotations

import sys

from dispatcher.console.app import create_app
from dispatcher.console.context import Console
from dispatcher.serving import ServerLimits
from dispatcher.serving import serve as serve_app


def serve(console: Console, host: str, port: int, limits: ServerLimits | None = None) -> None:
    """Serve the API, the dashboard and ``/metrics`` on ``host:port`` until interrupted.

    ``limits`` default to the console's settings.
    """
    limits = limits or ServerLimits.from_settings(console.settings)
    app = create_app(console)
    print(f"dispatcher console on http://{host}:{port}/ (API under /api, metrics at /metrics)",
          file=sys.stderr, flush=True)
    serve_app(app, limits, host, port, access_log=True, log_level="info")
