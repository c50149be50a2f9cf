"""``python -m dispatcher.dev.flower ARGS``: ``celery ARGS`` with Flower's ``/metrics`` behind its credentials.

Flower exempts ``/metrics`` (and ``/healthcheck``) from authentication on purpose (its docs list
them; issue mher/flower#1342 asks to change that), and has no option to protect or turn off
``/metrics``. So, before Celery's command line runs, its route is pointed at a subclass of Flower's
own handler that requires the signed-in user exactly as Flower's pages do (``tornado.web.
authenticated`` over Flower's ``get_current_user``): with ``FLOWER_BASIC_AUTH`` set, a scrape without
those credentials gets 401; without credentials (loopback only, see ``dispatcher flower``) nothing
changes. ``/healthcheck`` stays open: it says only "OK", and health checks need no password.
"""

from __future__ import annotations

import sys
from typing import Any

import tornado.web
from flower import urls
from flower.views.monitor import Metrics


class AuthenticatedMetrics(Metrics):
    """Flower's Prometheus metrics, for the signed-in user only."""

    @tornado.web.authenticated
    async def get(self) -> None:
        await super().get()


def protect_metrics(handlers: list[Any]) -> None:
    """Point the ``/metrics`` route of Flower's ``handlers`` at :class:`AuthenticatedMetrics`, in place.

    Raises:
        RuntimeError: when no such route exists (a Flower release that moved it): better no Flower
            than one that shows its metrics to anyone.
    """
    found = [i for i, h in enumerate(handlers) if isinstance(h, tuple) and len(h) == 2 and h[1] is Metrics]
    if not found:
        raise RuntimeError("Flower's /metrics route was not found: cannot put it behind the credentials.")
    for i in found:
        handlers[i] = (handlers[i][0], AuthenticatedMetrics)


def main() -> None:
    """Run Celery's command line (``-A tasks.app flower ...``) with :func:`protect_metrics` applied."""
    protect_metrics(urls.handlers)
    from celery.bin.celery import main as celery_main

    sys.argv = ["celery", *sys.argv[1:]]
    celery_main()


if __name__ == "__main__":
    main()
