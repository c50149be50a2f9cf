"""Run the console with uvicorn. The access log stays on: no secret is ever in a console URL."""

from __future__ import annotations

import sys

import uvicorn

from dispatcher.console.app import create_app
from dispatcher.console.context import Console


def serve(console: Console, host: str, port: int) -> None:
    """Serve the API, the dashboard and ``/metrics`` on ``host:port`` until interrupted."""
    app = create_app(console)
    print(f"dispatcher console on http://{host}:{port}/ (API under /api, metrics at /metrics)",
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=True, proxy_headers=False)
