"""Run the receiver with uvicorn; the access log is off because the secret is in the URL path."""

from __future__ import annotations

import importlib.util
import sys

import uvicorn

from dispatcher.delivery.webhook.app import create_app
from dispatcher.resources import Resources


def serve(resources: Resources, host: str, port: int) -> None:
    """Serve ``/dlr/{secret}`` on ``host:port`` until interrupted."""
    app = create_app(resources.redis, resources.keys, resources.settings.webhook_secret.reveal())
    fast = importlib.util.find_spec("uvloop") is not None and importlib.util.find_spec("httptools") is not None
    print(f"dispatcher webhook listening on http://{host}:{port}/dlr/<secret>", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                loop="uvloop" if fast else "asyncio", http="httptools" if fast else "h11")
