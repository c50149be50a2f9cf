"""Run the receiver with uvicorn; the access log is off because the secret is in the URL path."""

from __future__ import annotations

import importlib.util
import sys

import redis.asyncio as aioredis
import uvicorn

from dispatcher.delivery.webhook.app import create_app
from dispatcher.resources import REDIS_CONNECT_TIMEOUT_S, REDIS_SOCKET_TIMEOUT_S, Resources


def serve(resources: Resources, host: str, port: int) -> None:
    """Serve ``/dlr/{secret}`` on ``host:port`` until interrupted."""
    settings = resources.settings
    aio = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
                                  socket_timeout=REDIS_SOCKET_TIMEOUT_S)
    app = create_app(resources.redis, aio, resources.keys, settings.webhook_secret.reveal(),
                     held_retry_s=settings.held_retry_s)
    fast = importlib.util.find_spec("uvloop") is not None and importlib.util.find_spec("httptools") is not None
    print(f"dispatcher webhook listening on http://{host}:{port}/dlr/<secret>", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                loop="uvloop" if fast else "asyncio", http="httptools" if fast else "h11")
