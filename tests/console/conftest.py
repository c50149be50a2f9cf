"""Console fixtures: the app on the session's Redis and sandbox, tokens of both roles.

Batches are queued through the real Celery enqueuer on the Redis broker; API tests do not start a
worker (nothing needs sending to check an HTTP answer), so queued tasks simply wait in the broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from starlette.testclient import TestClient

from dispatcher.console.app import create_app
from dispatcher.console.auth import TokenStore
from dispatcher.console.context import Console
from dispatcher.keys import Keys
from dispatcher.sending.batches import BatchOps
from dispatcher.sending.schedules.store import ScheduleStore
from dispatcher.sending.store import CampaignStore
from dispatcher.settings import Settings
from tasks.enqueue import CeleryEnqueuer
from tasks.schedules import Entries


@dataclass
class ConsoleHandle:
    """A test client of the console with an admin and a viewer token."""

    http: TestClient
    console: Console
    admin: str
    viewer: str

    def as_admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin}"}

    def as_viewer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.viewer}"}


def build_console(settings: Settings, client: redis.Redis, public_metrics: bool = False) -> Console:
    keys = Keys(settings.key_prefix)
    return Console(settings=settings, store=CampaignStore(client, keys), ops=BatchOps(client, keys),
                   schedules=ScheduleStore(client, keys), tokens=TokenStore(client, keys),
                   enqueuer=CeleryEnqueuer(settings), entries=Entries(settings),
                   public_metrics=public_metrics)


@pytest.fixture()
def console_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings.with_overrides(max_upload_mb=1.0,
                                   console_data_dir=str(tmp_path_factory.mktemp("console-data")))


@pytest.fixture()
def api(console_settings: Settings, redis_client: redis.Redis) -> Iterator[ConsoleHandle]:
    console = build_console(console_settings, redis_client)
    admin = console.tokens.create("ops", "admin")
    viewer = console.tokens.create("watcher", "viewer")
    with TestClient(create_app(console, sample=False), base_url="http://console.test") as http:
        yield ConsoleHandle(http=http, console=console, admin=admin, viewer=viewer)
