"""A real Prometheus (Debian's /usr/bin/prometheus) scrapes a real console's ``/metrics`` with a
viewer's bearer token and loads deploy/prometheus/alerts.yml (issue 23): the target is up, every
series the rules read has data, and every rule evaluates without error. Skipped without prometheus."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from dispatcher.console.auth import TokenStore
from dispatcher.dev.services import Service, free_port, http_ready, spawn
from dispatcher.dev.services import wait_until as wait_started
from dispatcher.keys import Keys
from dispatcher.sending.health import WorkerRegistry
from dispatcher.settings import Settings
from tests.console.test_alert_metrics import read
from tests.helpers import UPLOAD_OPTIONS, SandboxHandle, small_csv, wait_until, worker_env
from tests.test_alerts import RULES, rules

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("prometheus") is None,
                                 reason="prometheus is not installed (apt-get install prometheus)")]


@pytest.fixture()
def console(settings: Settings, redis_client: redis.Redis, sandbox: SandboxHandle,
            tmp_path: Path) -> Iterator[tuple[Service, str]]:
    """A console process (metrics behind the token) with one campaign, and a viewer's token."""
    env = worker_env(settings, DISPATCHER_CONSOLE_DATA_DIR=str(tmp_path / "console-data"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    service = spawn("console", [sys.executable, "-m", "dispatcher", "console", "--port", str(port)], url, env=env)
    try:
        wait_started(http_ready(f"{url}/healthz"), service, timeout_s=30)
        tokens = TokenStore(redis_client, Keys(settings.key_prefix))
        created = httpx.post(f"{url}/api/campaigns", headers={"Authorization": f"Bearer {tokens.create('a', 'admin')}"},
                             data=UPLOAD_OPTIONS, files={"file": ("list.csv", small_csv(20), "text/csv")}, timeout=60)
        assert created.status_code == 201, created.text  # its preflight notes the balance: dispatcher_balance
        WorkerRegistry(redis_client, Keys(settings.key_prefix)).beat("w1@host", ttl_s=600)
        yield service, tokens.create("prometheus", "viewer")
    finally:
        service.stop()


@pytest.fixture()
def prometheus(console: tuple[Service, str], tmp_path: Path) -> Iterator[str]:
    """Prometheus scraping the console every second with the rules loaded; its URL."""
    service, token = console
    (tmp_path / "token").write_text(token, encoding="utf-8")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{
            "job_name": "dispatcher",
            "authorization": {"type": "Bearer", "credentials_file": str(tmp_path / "token")},
            "static_configs": [{"targets": [service.url.removeprefix("http://")]}],
        }],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"]
    server = spawn("prometheus", argv, url, log_dir=tmp_path)
    try:
        wait_started(http_ready(f"{url}/-/ready"), server, timeout_s=60)
        yield url
    finally:
        server.stop()


def api(url: str, path: str, **params: str) -> Any:
    """The ``data`` of a Prometheus HTTP API answer."""
    answer = httpx.get(f"{url}/api/v1/{path}", params=params, timeout=5).json()
    assert answer["status"] == "success", answer
    return answer["data"]


def test_prometheus_scrapes_the_console_and_evaluates_every_alert_rule(prometheus: str) -> None:
    def target_up() -> bool:
        targets = api(prometheus, "targets")["activeTargets"]
        return len(targets) == 1 and targets[0]["health"] == "up"

    wait_until(target_up, 30, lambda: api(prometheus, "targets"))
    assert api(prometheus, "query", query="dispatcher_workers_alive")["result"][0]["value"][1] == "1"

    wanted = {name for rule in rules() for name in read(rule["expr"])}

    def scraped() -> set[str]:
        result = api(prometheus, "query", query='count by (__name__) ({__name__=~"dispatcher_.+"})')["result"]
        return {series["metric"]["__name__"] for series in result}

    wait_until(lambda: wanted <= scraped(), 30, lambda: wanted - scraped())

    def evaluated() -> list[dict[str, Any]]:
        return [rule for group in api(prometheus, "rules")["groups"] for rule in group["rules"]]

    wait_until(lambda: all(rule["health"] == "ok" for rule in evaluated()), 30, evaluated)
    assert sorted(rule["name"] for rule in evaluated()) == sorted(rule["alert"] for rule in rules())
