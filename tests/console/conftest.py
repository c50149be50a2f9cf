"""Console fixtures: the app on the session's Redis and sandbox, tokens of both roles.

Batches are queued through the real Celery enqueuer on the Redis broker; API tests do not start a
worker (nothing needs sending to check an HTTP answer), so queued tasks simply wait in the broker.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from starlette.testclient import TestClient

from dispatcher.console.app import create_app
from dispatcher.settings import Settings
from tests.helpers import ConsoleHandle, build_console

#: The console's DISPATCHER_SECRET_KEY: the accounts tests add are encrypted with it.
SECRET_KEY = "the console tests' passphrase, 40 chars!"


@pytest.fixture()
def console_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings.with_overrides(max_upload_mb=1.0,
                                   console_data_dir=str(tmp_path_factory.mktemp("console-data")),
                                   secret_key=SECRET_KEY)


@pytest.fixture()
def api(console_settings: Settings, redis_client: redis.Redis) -> Iterator[ConsoleHandle]:
    console = build_console(console_settings, redis_client)
    admin = console.tokens.create("ops", "admin")
    viewer = console.tokens.create("watcher", "viewer")
    with TestClient(create_app(console, sample=False), base_url="http://console.test") as http:
        yield ConsoleHandle(http=http, console=console, admin=admin, viewer=viewer)
