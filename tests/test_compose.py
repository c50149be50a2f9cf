"""docker-compose.yml matches the code: services, commands and environment variables."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from dispatcher.cli import app
from dispatcher.settings import ENV_VARS

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def test_compose_has_redis_a_scalable_worker_beat_and_flower() -> None:
    services = compose()["services"]
    assert {"redis", "worker", "beat", "webhook", "flower"} <= set(services)
    assert "container_name" not in services["worker"]  # `--scale worker=N` needs unnamed containers
    assert all(s.get("image") == "dispatcher:latest" for name, s in services.items() if name != "redis")


def test_every_dispatcher_service_runs_a_real_command_of_the_cli() -> None:
    commands = {c.name for c in typer.main.get_command(app).commands.values()}  # type: ignore[attr-defined]
    for name, service in compose()["services"].items():
        if name == "redis":
            continue
        assert service["command"][0] in commands, name


def test_every_environment_variable_in_compose_is_one_the_code_reads() -> None:
    for name, service in compose()["services"].items():
        if name == "redis":
            continue
        assert set(service["environment"]) <= set(ENV_VARS), name


def test_flower_needs_basic_auth_and_listens_on_loopback_only() -> None:
    flower = compose()["services"]["flower"]
    assert {"FLOWER_USER", "FLOWER_PASSWORD"} <= set(flower["environment"])
    assert all(p.startswith("127.0.0.1:") for p in flower["ports"])


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_docker_compose_accepts_the_file() -> None:
    env = {**os.environ, "INSTASENT_TOKEN": "x", "FLOWER_USER": "u", "FLOWER_PASSWORD": "p",
           "DISPATCHER_WEBHOOK_SECRET": "s" * 32}
    result = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_console_listens_on_loopback_and_shares_schedule_files_with_the_workers() -> None:
    services = compose()["services"]
    console = services["console"]
    assert console["command"][0] == "console"
    assert all(p.startswith("127.0.0.1:") for p in console["ports"])
    data_dir = console["environment"]["DISPATCHER_CONSOLE_DATA_DIR"]
    shared = {v.split(":")[0] for v in console["volumes"] if v.split(":")[1] == data_dir}
    assert shared and all(any(v.startswith(f"{name}:{data_dir}") for v in services["worker"]["volumes"])
                          for name in shared)
