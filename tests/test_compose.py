"""docker-compose.yml matches the code: services, commands and environment variables; its `ha`
profile (a master, two replicas, three sentinels) matches deploy/ha.env and deploy/redis/sentinel.conf."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
import typer.main
import yaml

from dispatcher.cli import app
from dispatcher.dev.services import free_port, redis_server_binary, spawn, start_redis
from dispatcher.resources import parse_redis_url
from dispatcher.settings import ENV_VARS
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[1]
#: The services of the `ha` profile.
HA = {"redis-master", "redis-replica-1", "redis-replica-2", "sentinel-1", "sentinel-2", "sentinel-3"}
#: Variables docker-compose needs set (the file refuses to start without them).
REQUIRED = {"INSTASENT_TOKEN": "x", "FLOWER_USER": "u", "FLOWER_PASSWORD": "p", "DISPATCHER_WEBHOOK_SECRET": "s" * 32}


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def is_redis(service: dict[str, Any]) -> bool:
    """A Redis server or sentinel (the stock image), not one of the dispatcher's own services."""
    return str(service.get("image", "")).startswith("redis:")


def env_file(path: Path) -> dict[str, str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def sentinel_conf() -> list[list[str]]:
    lines = (ROOT / "deploy" / "redis" / "sentinel.conf").read_text(encoding="utf-8").splitlines()
    return [line.split() for line in lines if line.strip() and not line.startswith("#")]


def test_compose_has_redis_a_scalable_worker_beat_and_flower() -> None:
    services = compose()["services"]
    assert {"redis", "worker", "beat", "webhook", "flower"} <= set(services)
    assert "container_name" not in services["worker"]  # `--scale worker=N` needs unnamed containers
    assert all(s.get("image") == "dispatcher:latest" for name, s in services.items() if not is_redis(s))


def test_every_dispatcher_service_runs_a_real_command_of_the_cli() -> None:
    commands = {c.name for c in typer.main.get_command(app).commands.values()}  # type: ignore[attr-defined]
    for name, service in compose()["services"].items():
        if is_redis(service):
            continue
        assert service["command"][0] in commands, name


def test_every_environment_variable_in_compose_is_one_the_code_reads() -> None:
    for name, service in compose()["services"].items():
        if is_redis(service):
            continue
        assert set(service["environment"]) <= set(ENV_VARS), name


def test_flower_needs_basic_auth_and_listens_on_loopback_only() -> None:
    flower = compose()["services"]["flower"]
    assert {"FLOWER_USER", "FLOWER_PASSWORD"} <= set(flower["environment"])
    assert all(p.startswith("127.0.0.1:") for p in flower["ports"])


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_docker_compose_accepts_the_file() -> None:
    env = {**os.environ, **REQUIRED}
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


def test_the_ha_profile_adds_a_master_two_replicas_and_three_sentinels_only_when_asked_and_publishes_none() -> None:
    services = compose()["services"]
    profiled = {name for name, s in services.items() if s.get("profiles")}
    assert profiled == HA
    assert all(services[name]["profiles"] == ["ha"] and is_redis(services[name]) for name in HA)
    assert all("ports" not in services[name] for name in HA)  # Redis is reached on the compose network only
    assert "--appendonly" in services["redis-master"]["command"]
    for replica in ("redis-replica-1", "redis-replica-2"):
        command = services[replica]["command"]
        assert command[command.index("--replicaof") + 1:][:2] == ["redis-master", "6379"], replica
        assert command[command.index("--replica-announce-ip") + 1] == replica


def test_the_sentinels_monitor_the_master_and_service_name_that_ha_env_gives_every_part() -> None:
    services = compose()["services"]
    target = parse_redis_url(env_file(ROOT / "deploy" / "ha.env")["REDIS_URL"])
    conf = sentinel_conf()
    port = int(next(line[1] for line in conf if line[0] == "port"))
    assert target.sentinel and {host for host, _ in target.sentinels} == {f"sentinel-{i}" for i in (1, 2, 3)}
    assert {p for _, p in target.sentinels} == {port}
    monitor = next(line for line in conf if line[:2] == ["sentinel", "monitor"])
    assert monitor[2] == target.service == "dispatcher"
    assert monitor[3] == "redis-master" and monitor[4] == "6379" and int(monitor[5]) == 2  # a majority of three
    assert conf.index(["sentinel", "resolve-hostnames", "yes"]) < conf.index(monitor)  # else names do not resolve
    for name in ("sentinel-1", "sentinel-2", "sentinel-3"):
        assert "./deploy/redis/sentinel.conf:/etc/redis/sentinel.conf:ro" in services[name]["volumes"]
        assert "--sentinel" in services[name]["entrypoint"][-1]
    assert int(env_file(ROOT / "deploy" / "ha.env")["DISPATCHER_REDIS_MIN_REPLICAS"]) in (1, 2)  # two replicas run


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_docker_compose_accepts_the_ha_profile_and_points_every_part_at_the_sentinels() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DISPATCHER_REDIS_MIN_REPLICAS"}}
    result = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "--env-file",
                             str(ROOT / "deploy" / "ha.env"), "--profile", "ha", "config"],
                            env={**env, **REQUIRED}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert set(services) >= HA
    url = env_file(ROOT / "deploy" / "ha.env")["REDIS_URL"]
    for name, service in services.items():
        if not is_redis(service):
            assert service["environment"]["REDIS_URL"] == url, name
            assert service["environment"]["DISPATCHER_REDIS_MIN_REPLICAS"] == "1", name


@pytest.mark.slow  # starts a redis-server and a sentinel (about a second)
def test_redis_server_runs_deploy_sentinel_conf_and_it_finds_its_master(tmp_path: Path) -> None:
    master = start_redis()
    sentinel = None
    try:
        port = free_port()
        master_port = int(master.url.rsplit(":", 1)[1].split("/")[0])
        text = (ROOT / "deploy" / "redis" / "sentinel.conf").read_text(encoding="utf-8")
        # Only the addresses change: the container's port, directory and the master's host name.
        text = (text.replace("port 26379", f"port {port}").replace("dir /data", f"dir {tmp_path}")
                .replace("redis-master 6379", f"127.0.0.1 {master_port}")) + "bind 127.0.0.1\n"
        (tmp_path / "sentinel.conf").write_text(text, encoding="utf-8")
        sentinel = spawn("sentinel", [redis_server_binary(), str(tmp_path / "sentinel.conf"), "--sentinel"],
                         f"redis://127.0.0.1:{port}", log_dir=tmp_path)
        client: Any = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)

        def found() -> Any:
            try:
                return client.sentinel_get_master_addr_by_name("dispatcher")
            except redis.exceptions.RedisError:
                return None

        assert wait_until(found, 15, lambda: sentinel.log_tail() if sentinel else "") == (b"127.0.0.1", master_port)
        state = client.sentinel_master("dispatcher")
        assert state["is_master"] and not state["is_sdown"]
        assert int(state["down-after-milliseconds"]) == 5000 and int(state["quorum"]) == 2
        client.close()
    finally:
        if sentinel is not None:
            sentinel.stop()
        master.stop()
