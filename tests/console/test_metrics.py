"""``/metrics``: Prometheus text of campaigns and of the workers' telemetry, behind the token."""

from __future__ import annotations

import redis
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from dispatcher.console.app import create_app
from dispatcher.console.series import read_series, take_samples
from dispatcher.keys import Keys
from dispatcher.sending.telemetry import Telemetry
from dispatcher.settings import Settings
from tests.helpers import ConsoleHandle, build_console, upload_campaign


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_carry_campaign_messages_bulk_statuses_429s_waits_and_batch_durations(
        api: ConsoleHandle, redis_client: redis.Redis) -> None:
    cid = upload_campaign(api, name="spring")["id"]
    telemetry = Telemetry(redis_client, Keys(api.console.settings.key_prefix))
    for status in (200, 200, 429, 500):
        telemetry.bulk_answered(status)
    telemetry.waited(1.5)
    telemetry.batch_done(0.3)
    telemetry.batch_done(12.0)
    telemetry.flush()
    response = api.http.get("/metrics", headers=api.as_viewer())
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    got = samples(response.text)
    who = (("account", "default"), ("campaign", cid), ("name", "spring"))
    assert got[("dispatcher_campaign_messages", (*who, ("status", "pending")))] == 120
    assert got[("dispatcher_campaign_deliveries", (*who, ("outcome", "delivered")))] == 0
    assert got[("dispatcher_bulk_requests_total", (("status", "200"),))] == 2
    assert got[("dispatcher_rate_limited_total", ())] == 1
    assert got[("dispatcher_limiter_wait_seconds_total", ())] == 1.5
    assert got[("dispatcher_batch_duration_seconds_bucket", (("le", "0.5"),))] == 1
    assert got[("dispatcher_batch_duration_seconds_bucket", (("le", "+Inf"),))] == 2
    assert got[("dispatcher_batch_duration_seconds_count", ())] == 2


def test_metrics_need_the_token_unless_the_console_makes_them_public(
        console_settings: Settings, redis_client: redis.Redis) -> None:
    with TestClient(create_app(build_console(console_settings, redis_client), sample=False)) as http:
        assert http.get("/metrics").status_code == 401
    with TestClient(create_app(build_console(console_settings, redis_client, public_metrics=True),
                               sample=False)) as http:
        assert http.get("/metrics").status_code == 200


def test_the_sampler_records_live_campaigns_once_per_second_for_the_charts(api: ConsoleHandle) -> None:
    cid = upload_campaign(api)["id"]
    store = api.console.store
    assert take_samples(store, 3600, now=1000.0) == 1
    assert take_samples(store, 3600, now=1000.5) == 0  # the same second: another console took it
    assert take_samples(store, 3600, now=1001.0) == 1
    series = read_series(store, cid)
    assert [s[0] for s in series] == [1000.0, 1001.0]
    body = api.http.get(f"/api/campaigns/{cid}/series", headers=api.as_viewer()).json()
    assert len(body["samples"]) == 2 and body["pace_limit_per_s"] > 0
