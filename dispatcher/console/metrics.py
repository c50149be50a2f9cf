"""``GET /metrics``: Prometheus text through ``prometheus_client``, read from Redis at each scrape.

Campaign gauges come from the campaign store (the newest campaigns still kept); the gauges the alert
rules of ``deploy/prometheus/alerts.yml`` watch come from where ``dispatcher health`` reads them (live
worker heartbeats, Redis' connected replicas against ``DISPATCHER_REDIS_MIN_REPLICAS``), the held
delivery reports and the balance each organization's last preflight read; worker counters
(bulk answers by status, 429s, slot waits, the batch-duration histogram) from the hash the
workers add to (``dispatcher.sending.telemetry``), where the receiver and the Lua scripts also count the
delivery reports they refused (``REFUSED_REPORTS``). A custom collector reads both at scrape time,
so every console replica exposes the same numbers and nothing is double-counted.

A token scoped to some accounts (``dispatcher token create --account``) sees the gauges of those
accounts' campaigns only, and of the workers' counters only the series labelled with one of its
accounts (``account``); a counter without that label sums every account's traffic, so it is left out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dispatcher.console.auth import TokenInfo
from dispatcher.console.context import Console
from dispatcher.delivery.held import HeldReports
from dispatcher.preflight.pricing import seen_balances
from dispatcher.schema.names import REFUSED_REPORTS
from dispatcher.sending import telemetry
from dispatcher.sending.health import WorkerRegistry
from dispatcher.sending.readiness import connected_replicas
from dispatcher.sending.telemetry import BATCH_BUCKETS

#: Campaigns whose per-message gauges are exported (the newest ones; older ones are in ``report``).
EXPORTED_CAMPAIGNS = 200
#: Hash field a watchdog may count its re-driven batches under (exported when present).
REDRIVES_FIELD = "watchdog:redriven"


class DispatcherCollector:
    """Reads the campaign store and the workers' telemetry at every scrape, for ``token`` (None:
    everything, as for an unscoped token or ``--public-metrics``)."""

    def __init__(self, console: Console, token: TokenInfo | None = None) -> None:
        self.console = console
        self.token = token if token is not None and token.scoped else None

    def describe(self) -> list[Metric]:
        return []  # metrics are built at collect time from Redis; nothing to pre-declare

    def collect(self) -> Iterator[Metric]:
        yield from self._campaigns()
        workers = self._workers(telemetry.read(self.console.store.redis, self.console.store.keys))
        if self.token is None:
            yield from self._operations()
            yield from workers
            return
        # A scoped token sees its accounts' series only: the install-wide operations gauges
        # (workers, held reports, balances, replicas) say nothing of one account.
        for metric in workers:
            if _only_accounts(metric, self.token):
                yield metric

    def _campaigns(self) -> Iterator[Metric]:
        # Every per-campaign series names the campaign's account: sums by account need no join.
        messages = GaugeMetricFamily("dispatcher_campaign_messages", "Messages of a campaign by status.",
                                     labels=["campaign", "name", "account", "status"])
        delivery = GaugeMetricFamily("dispatcher_campaign_deliveries",
                                     "Messages of a campaign by final delivery report (delivered, undelivered).",
                                     labels=["campaign", "name", "account", "outcome"])
        states = GaugeMetricFamily("dispatcher_campaigns", "Campaigns kept in Redis by state.", labels=["state"])
        window = GaugeMetricFamily("dispatcher_campaign_window_waiting",
                                   "Messages of a campaign waiting for their send window to open.",
                                   labels=["campaign", "name", "account"])
        # 1 per campaign, its state a label: lets a rule keep paused or finished campaigns out.
        state_of = GaugeMetricFamily("dispatcher_campaign_info", "A campaign's state (the value is always 1).",
                                     labels=["campaign", "name", "account", "state"])
        cost = GaugeMetricFamily("dispatcher_campaign_cost", "Estimated cost of a campaign.",
                                 labels=["campaign", "name", "account", "currency"])
        by_state: dict[str, int] = {}
        if self.token is None:
            infos = self.console.store.recent(EXPORTED_CAMPAIGNS)
        else:
            infos, _ = self.console.store.recent_in(self.token.accounts, EXPORTED_CAMPAIGNS)
        for info in infos:
            by_state[info.state] = by_state.get(info.state, 0) + 1
            state_of.add_metric([info.id, info.name, info.account, info.state], 1)
            window.add_metric([info.id, info.name, info.account], info.waiting)
            for status, n in info.counts.items():
                messages.add_metric([info.id, info.name, info.account, status], n)
            for outcome in ("delivered", "undelivered"):
                delivery.add_metric([info.id, info.name, info.account, outcome], info.delivery.get(outcome, 0))
            cost.add_metric([info.id, info.name, info.account, info.currency], info.cost)
        for state, n in sorted(by_state.items()):
            states.add_metric([state], n)
        yield from (messages, delivery, states, cost, state_of, window)

    def _operations(self) -> Iterator[Metric]:
        client, keys = self.console.store.redis, self.console.store.keys
        yield GaugeMetricFamily("dispatcher_workers_alive", "Workers whose heartbeat has not run out.",
                                value=len(WorkerRegistry(client, keys).alive()))
        yield GaugeMetricFamily("dispatcher_delivery_reports_held",
                                "Delivery reports held until their campaign or send record is found.",
                                value=HeldReports(client, keys).count())
        yield GaugeMetricFamily("dispatcher_redis_replicas", "Replicas connected to the Redis master.",
                                value=connected_replicas(client))
        yield GaugeMetricFamily("dispatcher_redis_min_replicas",
                                "Replicas each POST waits for (DISPATCHER_REDIS_MIN_REPLICAS); 0 for none.",
                                value=self.console.settings.redis_min_replicas)
        balance = GaugeMetricFamily("dispatcher_balance",
                                    "Instasent balance available, as each organization's last preflight read it.",
                                    labels=["organization", "currency"])
        for seen in seen_balances(client, keys):
            balance.add_metric([seen.organization, seen.currency], seen.available)
        yield balance

    def _workers(self, counters: dict[str, float]) -> Iterator[Metric]:
        bulk = CounterMetricFamily("dispatcher_bulk_requests", "POST /sms/bulk answers by HTTP status.",
                                   labels=["status"])
        for name, value in sorted(counters.items()):
            if name.startswith("bulk:"):
                bulk.add_metric([name.removeprefix("bulk:")], value)
        yield bulk
        yield CounterMetricFamily("dispatcher_rate_limited", "Bulk requests Instasent answered 429.",
                                  value=counters.get("bulk:429", 0.0))
        yield CounterMetricFamily("dispatcher_limiter_wait_seconds",
                                  "Seconds workers waited for a shared rate-limit slot.",
                                  value=counters.get("limiter_wait_s", 0.0))
        yield _histogram(counters)
        refused = CounterMetricFamily(
            "dispatcher_delivery_reports_refused",
            "Delivery reports refused, by reason: mismatch (the Instasent id is not the one recorded for its clientId, "
            "or its message was not sent), status (not a status Instasent documents), source (an address outside "
            "DISPATCHER_WEBHOOK_ALLOW), expired (held, and no send ever matched it).", labels=["reason"])
        for reason, name in REFUSED_REPORTS.items():
            refused.add_metric([reason], counters.get(name, 0.0))
        yield refused
        if REDRIVES_FIELD in counters:
            yield CounterMetricFamily("dispatcher_watchdog_redrives", "Batches the watchdog drove again.",
                                      value=counters[REDRIVES_FIELD])


def _only_accounts(metric: Metric, token: TokenInfo) -> bool:
    """Keep only the samples of ``metric`` labelled with one of ``token``'s accounts; True when any is left."""
    metric.samples = [s for s in metric.samples if "account" in s.labels and token.sees(s.labels["account"])]
    return bool(metric.samples)


def _histogram(counters: dict[str, float]) -> HistogramMetricFamily:
    buckets: list[tuple[str, float]] = []
    cumulative = 0.0
    for bound in BATCH_BUCKETS:
        cumulative += counters.get(f"batch:le:{bound:g}", 0.0)
        buckets.append((f"{bound:g}", cumulative))
    buckets.append(("+Inf", cumulative + counters.get("batch:le:+Inf", 0.0)))
    return HistogramMetricFamily("dispatcher_batch_duration_seconds",
                                 "Seconds one batch attempt took, from claim to recorded outcome.",
                                 buckets=buckets, sum_value=counters.get("batch:sum", 0.0))


def registry_for(console: Console, token: TokenInfo | None = None) -> CollectorRegistry:
    """A registry holding only the dispatcher collector (no process metrics of the console itself),
    showing what ``token`` may see (None: everything)."""
    registry = CollectorRegistry(auto_describe=False)
    collector: Any = DispatcherCollector(console, token)
    registry.register(collector)
    return registry


def routes(console: Console) -> list[Route]:
    """``GET /metrics``, behind the bearer token unless the console runs with ``--public-metrics``;
    a scoped token's scrape shows only its accounts' series."""
    everything = registry_for(console)

    async def metrics(request: Request) -> Response:
        registry = everything
        if not console.public_metrics:
            token = console.authorize(request, change=False)
            if token.scoped:  # a registry per scrape: the collector reads Redis at each one anyway
                registry = registry_for(console, token)
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", metrics, methods=["GET"])]
