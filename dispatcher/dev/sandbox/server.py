"""Run the sandbox app under uvicorn, with uvloop and httptools when they are installed."""

from __future__ import annotations

import importlib.util
import sys

from dispatcher.dev.sandbox.config import SandboxConfig

#: Seconds a stopping server waits for in-flight requests (a held "timeout" response can be long).
GRACEFUL_SHUTDOWN_S = 2
#: Seconds an idle keep-alive connection stays open.
KEEP_ALIVE_S = 30


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def serve(config: SandboxConfig, host: str = "127.0.0.1", port: int = 8787) -> None:
    """Serve the sandbox on ``host:port`` until interrupted. Prints one line, never the token."""
    import uvicorn

    from dispatcher.dev.sandbox.app import create_app

    print(f"Instasent sandbox listening on http://{host}:{port}", file=sys.stderr, flush=True)
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        loop="uvloop" if _installed("uvloop") else "asyncio",
        http="httptools" if _installed("httptools") else "h11",
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
