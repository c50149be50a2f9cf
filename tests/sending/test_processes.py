"""``dispatcher worker --processes N`` runs N Celery workers forked after the imports (``tasks.processes``)."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
import redis

from dispatcher.dev import services
from dispatcher.dev.services import spawn, worker_argv
from dispatcher.keys import Keys
from dispatcher.sending.health import WorkerRegistry
from dispatcher.settings import Settings
from tasks import processes
from tests.helpers import Harness, SandboxHandle, assert_exactly_once, finished, recipients, wait_until, worker_env


def test_each_child_gets_a_node_name_of_its_own() -> None:
    assert processes.child_argv(["--hostname", "w@h", "-c", "2"], 1) == ["--hostname", "w-1@h", "-c", "2"]
    named = processes.child_argv(["-c", "2"], 0)
    assert named[:2] == ["-c", "2"] and named[2] == "--hostname" and named[3].endswith("-0@%h")


def test_a_bad_process_count_is_refused_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert processes.main(["zero"]) == 2
    assert "usage" in capsys.readouterr().err


def test_the_default_worker_is_one_celery_process_and_more_are_forked_by_the_supervisor() -> None:
    assert worker_argv()[1:4] == ["-m", "celery", "-A"]
    assert worker_argv(processes=2)[1:4] == ["-m", "tasks.processes", "2"]


@pytest.fixture()
def harness(settings: Settings, redis_client: redis.Redis, sandbox: SandboxHandle) -> Iterator[Harness]:
    h = Harness(settings.with_overrides(queue_window=8), redis_client, sandbox)
    yield h
    h.stop()


@pytest.mark.slow
def test_two_forked_workers_send_a_campaign_exactly_once_and_stop_together(
        harness: Harness, redis_client: redis.Redis) -> None:
    argv = worker_argv(processes=2, queue=harness.settings.task_queue)
    service = spawn("worker", argv, url="", env=worker_env(harness.settings))
    harness.workers.append(service)
    services.wait_until(lambda: service.log_tail(400).count("ready.") >= 2, service, timeout_s=90)
    registry = WorkerRegistry(redis_client, Keys(harness.settings.key_prefix))
    assert len(registry.alive()) == 2
    cid = harness.submit(recipients(2000))
    info = harness.wait(cid, finished)
    assert info.state == "completed" and info.counts["sent"] == 2000
    assert_exactly_once(harness, cid, info)
    service.process.send_signal(signal.SIGTERM)
    wait_until(lambda: service.process.poll() is not None, 30, "the supervisor to exit")
    assert service.process.poll() == 0
