"""``GET /healthz`` and ``GET /readyz`` on both servers (issue 23): no token, the checks of
``dispatcher health`` (one code path), 503 naming the failed checks, and a quick answer when Redis
is down or hangs; no host name or password in a body."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import pytest
import redis
from starlette.testclient import TestClient

from dispatcher.console.app import create_app as console_app
from dispatcher.dev.ha import start_ha
from dispatcher.dev.services import start_webhook
from dispatcher.keys import Keys
from dispatcher.resources import connect_redis, parse_redis_url, readiness_probe
from dispatcher.sending.health import WorkerRegistry
from dispatcher.sending.readiness import PROBE_DEADLINE_S, ReadinessProbe, check_health
from dispatcher.settings import Settings
from dispatcher.webhook.app import create_app as webhook_app
from tests.helpers import build_console, wait_until

#: Builds a server's test client for ``settings``, with the probe given (or the server's own).
Server = Callable[[Settings, ReadinessProbe | None], AbstractContextManager[TestClient]]


@contextmanager
def _console(settings: Settings, probe: ReadinessProbe | None) -> Iterator[TestClient]:
    client = connect_redis(settings.redis_url)
    with TestClient(console_app(build_console(settings, client), sample=False, probe=probe)) as http:
        yield http
    client.close()


@contextmanager
def _webhook(settings: Settings, probe: ReadinessProbe | None) -> Iterator[TestClient]:
    client = connect_redis(settings.redis_url)
    aio = parse_redis_url(settings.redis_url).async_client(connect_timeout_s=1, timeout_s=5)
    app = webhook_app(client, aio, Keys(settings.key_prefix), "s" * 32, held_retry_s=0,
                      probe=probe or readiness_probe(settings))
    with TestClient(app) as http:
        yield http
    client.close()


@pytest.fixture(params=["console", "webhook"])
def server(request: pytest.FixtureRequest) -> Server:
    return _console if request.param == "console" else _webhook


@pytest.fixture()
def probe_settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.with_overrides(console_data_dir=str(tmp_path / "console-data"))


@pytest.fixture()
def hung_redis() -> Iterator[str]:
    """A Redis URL whose server takes connections and never answers (a hung host)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)  # the kernel completes the handshakes; nobody ever reads
    yield f"redis://:pw-s3cret@127.0.0.1:{listener.getsockname()[1]}/0"
    listener.close()


def test_healthz_answers_without_a_token_or_redis(server: Server, probe_settings: Settings) -> None:
    dead = probe_settings.with_overrides(redis_url="redis://127.0.0.1:1/0")
    with server(dead, None) as http:
        answer = http.get("/healthz")
    assert answer.status_code == 200 and answer.json() == {"ok": True}


def test_readyz_is_200_with_every_check_when_redis_takes_writes_and_a_worker_beats(
        server: Server, probe_settings: Settings, redis_client: redis.Redis) -> None:
    keys = Keys(probe_settings.key_prefix)
    WorkerRegistry(redis_client, keys).beat("w1@host")
    with server(probe_settings, None) as http:
        answer = http.get("/readyz")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ready"] and set(body["checks"]) == {"redis", "writable", "replicas", "workers"}
    assert body["checks"]["workers"]["detail"] == "1 worker(s) alive"


def test_readyz_and_dispatcher_health_run_the_same_checks_and_agree(
        server: Server, probe_settings: Settings, redis_client: redis.Redis) -> None:
    cli = check_health(redis_client, Keys(probe_settings.key_prefix), probe_settings).to_json()
    with server(probe_settings, None) as http:
        answer = http.get("/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert {k: body[k] for k in ("live", "ready", "checks")} == cli


def test_readyz_is_503_naming_the_failed_checks_and_workers_0_leaves_the_workers_out(
        server: Server, probe_settings: Settings, redis_client: redis.Redis) -> None:
    needs_a_replica = probe_settings.with_overrides(redis_min_replicas=1)
    with server(needs_a_replica, None) as http:
        answer = http.get("/readyz")
        without_workers = http.get("/readyz?workers=0")
        bad = http.get("/readyz?workers=maybe")
    assert answer.status_code == 503
    assert answer.json()["error"] == (
        "not ready: replicas (0 replica(s) connected, 1 needed before each POST (DISPATCHER_REDIS_MIN_REPLICAS)); "
        "workers (no worker heartbeat: start `dispatcher worker`).")
    assert without_workers.status_code == 503 and "workers" not in without_workers.json()["checks"]
    assert without_workers.json()["error"].startswith("not ready: replicas (")
    assert bad.status_code == 400 and "workers must be 0" in bad.json()["error"]
    with server(probe_settings, None) as http:
        assert http.get("/readyz?workers=0").status_code == 200


def test_readyz_of_an_unreachable_redis_is_503_at_once_without_its_address_or_password(
        server: Server, probe_settings: Settings) -> None:
    dead = probe_settings.with_overrides(redis_url="redis://:pw-s3cret@127.0.0.1:1/0")
    with server(dead, None) as http:
        started = time.monotonic()
        answer = http.get("/readyz")
        took = time.monotonic() - started
    assert answer.status_code == 503 and took < PROBE_DEADLINE_S
    assert answer.json()["error"] == "not ready: redis (Redis does not answer (ConnectionError))."
    assert "pw-s3cret" not in answer.text and "127.0.0.1" not in answer.text


@pytest.mark.slow  # each waits out the probe client's 1.5 s reply timeout
def test_readyz_of_a_redis_that_never_answers_is_503_within_the_deadline(
        server: Server, probe_settings: Settings, hung_redis: str) -> None:
    hung = probe_settings.with_overrides(redis_url=hung_redis)
    probe = readiness_probe(hung)
    probe.deadline_s = 0.3  # under the client's 1.5 s reply timeout: the deadline must answer
    with server(hung, probe) as http:
        started = time.monotonic()
        answers = [http.get("/readyz") for _ in range(3)]
        took = time.monotonic() - started
    assert [a.status_code for a in answers] == [503, 503, 503]
    assert answers[0].json()["error"] == "not ready: redis (Redis did not answer the checks within 0.3 s)."
    assert took < 3 * 0.3 + 1.0
    assert "pw-s3cret" not in answers[0].text


@pytest.mark.slow
def test_the_default_probe_gives_up_on_a_hung_redis_by_its_reply_timeout(
        server: Server, probe_settings: Settings, hung_redis: str) -> None:
    with server(probe_settings.with_overrides(redis_url=hung_redis), None) as http:
        started = time.monotonic()
        answer = http.get("/readyz")
        took = time.monotonic() - started
    assert answer.status_code == 503 and took <= PROBE_DEADLINE_S + 0.5
    assert answer.json()["error"] == "not ready: redis (Redis does not answer (TimeoutError))."


@pytest.mark.slow  # a master, two replicas and three sentinels, and one failover: about 6 s
def test_readyz_follows_sentinel_through_a_failover_and_counts_the_replicas(probe_settings: Settings) -> None:
    server = _webhook  # the console's probe is the same object (the tests above run both)
    with start_ha() as ha:
        on_ha = probe_settings.with_overrides(redis_url=ha.url(), redis_min_replicas=2)
        replica = next(node for node in ha.nodes if node is not ha.master())
        with server(probe_settings.with_overrides(redis_url=f"redis://{replica.address}/0"), None) as http:
            refused = http.get("/readyz?workers=0").json()  # pointed at a replica by mistake
        assert refused["checks"]["writable"] == {
            "ok": False, "detail": "Redis refuses writes (ReadOnlyError: You can't write against a read only replica.)"}
        probe = readiness_probe(on_ha)
        probe.fresh_s = 0  # every request asks Redis: the switch must show at once
        with server(on_ha, probe) as http:
            body = http.get("/readyz?workers=0").json()
            assert body["ready"], body
            assert body["checks"]["redis"]["detail"] == "Redis answers (through Sentinel)"
            assert body["checks"]["replicas"]["detail"].startswith("2 replica(s) connected, 2 needed")
            ha.kill_master()
            started = time.monotonic()
            answer = http.get("/readyz?workers=0")  # during the switch: not ready, and said at once
            assert answer.status_code == 503 and time.monotonic() - started <= PROBE_DEADLINE_S + 0.5
            # The promoted replica has the one other replica left: ready again, by itself, once
            # fewer replicas are needed than before; with two needed it stays 503 naming the replicas.
            wait_until(lambda: "replicas (1 replica(s) connected, 2 needed" in http.get("/readyz?workers=0").text,
                       30, "the probe to reach the promoted master")
        with server(on_ha.with_overrides(redis_min_replicas=1), None) as http:
            wait_until(lambda: http.get("/readyz?workers=0").status_code == 200, 30, "ready after the failover")


@pytest.mark.slow  # starts `dispatcher webhook`
def test_the_receiver_processes_answer_readyz_without_the_secret(settings: Settings) -> None:
    env = {"REDIS_URL": settings.redis_url, "DISPATCHER_KEY_PREFIX": settings.key_prefix,
           "DISPATCHER_WEBHOOK_SECRET": "s" * 32, "DISPATCHER_ALLOW_VOLATILE_REDIS": "1",
           "DISPATCHER_WEBHOOK_ALLOW": "10.9.9.0/24"}  # the allow list guards /dlr/ only
    service = start_webhook(env)
    try:
        answers = [httpx.get(f"{service.url}/readyz?workers=0", timeout=5) for _ in range(4)]
        assert [a.status_code for a in answers] == [200] * 4, answers[0].text
        missing = httpx.get(f"{service.url}/readyz", timeout=5)
        assert missing.status_code == 503 and "workers (no worker heartbeat" in missing.json()["error"]
    finally:
        service.stop()


def test_a_fresh_readiness_answer_is_reused_so_polling_does_not_drive_redis(
        server: Server, probe_settings: Settings, redis_client: redis.Redis) -> None:
    probe = readiness_probe(probe_settings)
    probe.fresh_s = 60
    with server(probe_settings, probe) as http:
        assert http.get("/readyz").status_code == 503  # no worker yet
        WorkerRegistry(redis_client, Keys(probe_settings.key_prefix)).beat("w1@host")
        assert http.get("/readyz").status_code == 503  # the same answer, within its minute
        assert http.get("/readyz?workers=0").status_code == 200  # each flag has its own
    probe.fresh_s = 0
    with server(probe_settings, probe) as http:
        assert http.get("/readyz").status_code == 200
