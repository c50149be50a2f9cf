"""Run the receiver with uvicorn, under the deadlines and the connection cap of :mod:`dispatcher.serving`;
the access log is off because the secret is in the URL path.

With ``workers`` over 1, uvicorn starts that many processes sharing the listening socket, each
building its app with :func:`app_from_env` from the same environment (and the limits its parent
hands down), so the receiver uses several cores (one event loop uses one).
"""

from __future__ import annotations

import sys

from starlette.types import ASGIApp

from dispatcher.resources import (
    REDIS_CONNECT_TIMEOUT_S,
    REDIS_SOCKET_TIMEOUT_S,
    Resources,
    parse_redis_url,
    readiness_probe,
)
from dispatcher.serving import ServerLimits, guard, handed_down_limits, speedups_installed
from dispatcher.serving import serve as serve_app
from dispatcher.settings import Settings
from dispatcher.webhook.app import create_app


def build_app(resources: Resources) -> ASGIApp:
    """The receiver for ``resources`` (its own asyncio Redis client beside the blocking one)."""
    settings = resources.settings
    # The same URL the blocking client parsed: a Sentinel URL gives an asyncio client of the master.
    aio = parse_redis_url(settings.redis_url, ca_file=settings.redis_ca_file).async_client(
        connect_timeout_s=REDIS_CONNECT_TIMEOUT_S, timeout_s=REDIS_SOCKET_TIMEOUT_S)
    return create_app(resources.redis, aio, resources.keys, settings.webhook_secret.reveal(),
                      held_retry_s=settings.held_retry_s, allow=settings.webhook_allow_networks,
                      replicas=settings.redis_min_replicas, replica_wait_s=settings.redis_replica_wait_s,
                      probe=readiness_probe(settings), global_optout=settings.global_optout)


def app_from_env() -> ASGIApp:
    """The receiver for the settings in the environment, under the limits the parent handed down:
    the app factory of each worker process."""
    return guard(build_app(Resources.from_settings(Settings.from_env())), handed_down_limits())


def serve(resources: Resources, host: str, port: int, workers: int = 1, limits: ServerLimits | None = None) -> None:
    """Serve ``/dlr/{secret}`` on ``host:port`` with ``workers`` processes until interrupted.

    ``limits`` default to the settings of ``resources``.
    """
    limits = limits or ServerLimits.from_settings(resources.settings)
    fast = speedups_installed()
    print(f"dispatcher webhook listening on http://{host}:{port}/dlr/<secret> (probes: /healthz, /readyz)"
          + (f" with {workers} processes" if workers > 1 else ""), file=sys.stderr, flush=True)
    app: ASGIApp | str = f"{__name__}:app_from_env" if workers > 1 else build_app(resources)
    serve_app(app, limits, host, port, workers=workers, fast=fast, access_log=False, log_level="warning")
