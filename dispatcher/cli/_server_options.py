"""Command-line options of the HTTP servers (``console`` and ``webhook``), defined once.

Each overrides its setting (see :class:`dispatcher.settings.Settings`) for this run.
"""

from __future__ import annotations

from typing import Annotated

import typer

from dispatcher.serving import ServerLimits
from dispatcher.settings import Settings

HeaderTimeout = Annotated[float | None, typer.Option(
    "--header-timeout", min=0.1,
    help="Seconds a client has to send a request's headers; slower ones are closed "
         "(DISPATCHER_SERVER_HEADER_TIMEOUT, default 10).")]
BodyTimeout = Annotated[float | None, typer.Option(
    "--body-timeout", min=0.1,
    help="Seconds a request body may stall (each next KiB is due within them) before the connection is cut "
         "(DISPATCHER_SERVER_BODY_TIMEOUT, default 10).")]
KeepAlive = Annotated[int | None, typer.Option(
    "--keep-alive", min=1,
    help="Seconds an idle connection stays open after an answer (DISPATCHER_SERVER_KEEP_ALIVE, default 5).")]
MaxConnections = Annotated[int | None, typer.Option(
    "--max-connections", min=1,
    help="Open connections at most, per process (DISPATCHER_SERVER_MAX_CONNECTIONS, default 1000).")]
ForwardedAllowIps = Annotated[str | None, typer.Option(
    "--forwarded-allow-ips",
    help="Reverse proxies (IPs or CIDRs, comma-separated) whose X-Forwarded-For/-Proto are believed "
         "(DISPATCHER_FORWARDED_ALLOW_IPS; default none, not even 127.0.0.1).")]


def server_limits(settings: Settings, header_timeout: float | None, body_timeout: float | None,
                  keep_alive: int | None, max_connections: int | None, forwarded_allow_ips: str | None) -> ServerLimits:
    """The server limits of ``settings`` with the options given on the command line.

    Raises:
        ConfigurationError: when a proxy address is malformed.
    """
    return ServerLimits.from_settings(settings, header_timeout_s=header_timeout, body_timeout_s=body_timeout,
                                      keep_alive_s=keep_alive, max_connections=max_connections,
                                      forwarded_allow_ips=forwarded_allow_ips)
