"""Every series the alert rules (deploy/prometheus/alerts.yml) read is on the console's ``/metrics``,
with the labels the rules select on, so the rules and the code cannot drift apart (issue 23)."""

from __future__ import annotations

import re

import redis
from prometheus_client.parser import text_string_to_metric_families

from dispatcher.keys import Keys
from dispatcher.sending.health import WorkerRegistry
from tests.helpers import ConsoleHandle, upload_campaign
from tests.test_alerts import RULES, rules

#: A series name the rules read, and the selector that may follow it.
SERIES = re.compile(r"\b(dispatcher_[a-z0-9_]+)(\{[^}]*\})?")
#: A label name in a selector (``label="v"``, ``=~``, ``!=``, ``!~``).
LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


def exposed(text: str) -> dict[str, set[str]]:
    """Each sample name on a ``/metrics`` page and the label names it carries."""
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def read(expr: str) -> dict[str, set[str]]:
    """Each ``dispatcher_*`` series an expression reads, with the label names its selectors use."""
    wanted: dict[str, set[str]] = {}
    for name, selector in SERIES.findall(expr):
        wanted.setdefault(name, set()).update(LABEL.findall(selector))
    return wanted


def test_every_series_an_alert_rule_reads_is_on_metrics_with_the_labels_it_selects_on(
        api: ConsoleHandle, redis_client: redis.Redis) -> None:
    upload_campaign(api, name="spring")  # its preflight reads the balance: dispatcher_balance has a series
    WorkerRegistry(redis_client, Keys(api.console.settings.key_prefix)).beat("w1@host")
    response = api.http.get("/metrics", headers=api.as_viewer())
    assert response.status_code == 200
    on_page = exposed(response.text)
    checked = 0
    for rule in rules():
        for name, labels in read(rule["expr"]).items():
            assert name in on_page, f"{rule['alert']} reads {name}, which /metrics does not expose ({RULES.name})"
            assert labels <= on_page[name], f"{rule['alert']} selects {name} on labels {labels - on_page[name]}"
            checked += 1
    assert checked >= 8  # every rule reads at least one series; some two


def test_the_ops_gauges_say_what_dispatcher_health_sees(api: ConsoleHandle, redis_client: redis.Redis) -> None:
    keys = Keys(api.console.settings.key_prefix)
    WorkerRegistry(redis_client, keys).beat("w1@host")
    WorkerRegistry(redis_client, keys).beat("w2@host")
    upload_campaign(api, name="spring")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(api.http.get("/metrics", headers=api.as_viewer()).text)
               for s in f.samples}
    assert samples[("dispatcher_workers_alive", ())] == 2
    assert samples[("dispatcher_delivery_reports_held", ())] == 0
    assert samples[("dispatcher_redis_replicas", ())] == 0
    assert samples[("dispatcher_redis_min_replicas", ())] == api.console.settings.redis_min_replicas
    balances = {labels: value for (name, labels), value in samples.items() if name == "dispatcher_balance"}
    assert len(balances) == 1 and next(iter(balances.values())) > 0
    states = [dict(labels)["state"] for (name, labels), _ in samples.items() if name == "dispatcher_campaign_info"]
    assert states == ["running"] or states == ["queued"]
