"""Run the receiver with uvicorn; the access log is off because the secret is in the URL path.

With ``workers`` over 1, uvicorn starts that many processes sharing the listening socket, each
building its app with :func:`app_from_env` from the same environment, so the receiver uses
several cores (one event loop uses one).
"""

from __future__ import annotations

import importlib.util
import sys

import redis.asyncio as aioredis
import uvicorn
from starlette.types import ASGIApp

from dispatcher.resources import REDIS_CONNECT_TIMEOUT_S, REDIS_SOCKET_TIMEOUT_S, Resources
from dispatcher.settings import Settings
from dispatcher.webhook.app import create_app


def build_app(resources: Resources) -> ASGIApp:
    """The receiver for ``resources`` (its own asyncio Redis client beside the blocking one)."""
    settings = resources.settings
    aio = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
                                  socket_timeout=REDIS_SOCKET_TIMEOUT_S)
    return create_app(resources.redis, aio, resources.keys, settings.webhook_secret.reveal(),
                      held_retry_s=settings.held_retry_s)


def app_from_env() -> ASGIApp:
    """The receiver for the settings in the environment: the app factory of each worker process."""
    return build_app(Resources.from_settings(Settings.from_env()))


def serve(resources: Resources, host: str, port: int, workers: int = 1) -> None:
    """Serve ``/dlr/{secret}`` on ``host:port`` with ``workers`` processes until interrupted."""
    fast = importlib.util.find_spec("uvloop") is not None and importlib.util.find_spec("httptools") is not None
    options = {"host": host, "port": port, "log_level": "warning", "access_log": False,
               "loop": "uvloop" if fast else "asyncio", "http": "httptools" if fast else "h11"}
    print(f"dispatcher webhook listening on http://{host}:{port}/dlr/<secret>"
          + (f" with {workers} processes" if workers > 1 else ""), file=sys.stderr, flush=True)
    if workers > 1:
        uvicorn.run(f"{__name__}:app_from_env", factory=True, workers=workers, **options)  # type: ignore[arg-type]
    else:
        uvicorn.run(build_app(resources), **options)  # type: ignore[arg-type]
