"""`dispatcher health`: Redis, its replicas and the workers, in a line each, exit 0 only when all pass;
a malformed Sentinel URL is one sentence, its password never shown (issue 23)."""

from __future__ import annotations

import orjson

from tests.cli.test_campaigns import one_sentence_error, run


def test_health_passes_without_workers_when_told_not_to_require_them(redis_url: str) -> None:
    result = run({"REDIS_URL": redis_url}, "health", "--no-workers", "--json")
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    assert report["ready"] and report["live"]
    assert set(report["checks"]) == {"redis", "writable", "replicas"}


def test_health_fails_with_a_sentence_when_no_worker_runs(redis_url: str) -> None:
    result = run({"REDIS_URL": redis_url, "DISPATCHER_KEY_PREFIX": "dsp-health-none"}, "health")
    assert result.returncode == 1
    assert "FAIL workers" in result.stdout


def test_health_fails_when_fewer_replicas_than_the_posts_wait_for_are_connected(redis_url: str) -> None:
    result = run({"REDIS_URL": redis_url, "DISPATCHER_REDIS_MIN_REPLICAS": "1"}, "health", "--no-workers")
    assert result.returncode == 1
    assert "FAIL replicas: 0 replica(s) connected, 1 needed" in result.stdout


def test_health_of_an_unreachable_redis_fails_without_a_traceback() -> None:
    result = run({"REDIS_URL": "redis+sentinel://:pw-s3cret@127.0.0.1:1/dispatcher"}, "health")
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert "pw-s3cret" not in result.stdout + result.stderr


def test_a_malformed_sentinel_url_is_one_sentence_without_its_password() -> None:
    result = run({"REDIS_URL": "redis+sentinel://:pw-s3cret@127.0.0.1:notaport/dispatcher"}, "health")
    assert result.returncode == 2
    message = one_sentence_error(result)
    assert "REDIS_URL" in message and "sentinel port" in message
    assert "pw-s3cret" not in message


def test_an_unknown_scheme_is_one_sentence() -> None:
    result = run({"REDIS_URL": "redis-sentinel://127.0.0.1:26379/dispatcher"}, "health")
    assert result.returncode == 2
    assert "must start with redis://" in one_sentence_error(result)
