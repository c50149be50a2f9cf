"""Flower's ``/metrics`` needs the same credentials as its pages, on a real Flower process."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from dispatcher.dev.flower import AuthenticatedMetrics, protect_metrics
from dispatcher.dev.services import Service, start_flower
from dispatcher.settings import Settings
from tests.helpers import worker_env

pytestmark = pytest.mark.slow
LOGIN = ("flower", "test-flower-metrics-password")


@pytest.fixture()
def flower(settings: Settings, redis_client: redis.Redis) -> Iterator[Service]:
    service = start_flower({**worker_env(settings), "FLOWER_BASIC_AUTH": ":".join(LOGIN)})
    yield service
    service.stop()


def test_flower_metrics_refuse_a_scrape_without_the_credentials_and_serve_one_with_them(flower: Service) -> None:
    assert httpx.get(f"{flower.url}/metrics", timeout=10).status_code == 401
    assert httpx.get(f"{flower.url}/metrics", auth=("flower", "wrong"), timeout=10).status_code == 401
    scraped = httpx.get(f"{flower.url}/metrics", auth=LOGIN, timeout=10)
    assert scraped.status_code == 200
    assert "flower_events_total" in scraped.text or "# HELP" in scraped.text
    assert httpx.get(f"{flower.url}/healthcheck", timeout=10).text == "OK"  # health checks need no password


def test_a_flower_without_a_metrics_route_refuses_to_start_rather_than_show_it() -> None:
    handlers: list[object] = [(r"/healthcheck", object)]
    with pytest.raises(RuntimeError, match="/metrics route was not found"):
        protect_metrics(handlers)


def test_the_metrics_route_is_replaced_in_place() -> None:
    from flower.views.monitor import Metrics

    handlers: list[object] = [(r"/", object), (r"/metrics", Metrics)]
    protect_metrics(handlers)
    assert handlers == [(r"/", object), (r"/metrics", AuthenticatedMetrics)]
