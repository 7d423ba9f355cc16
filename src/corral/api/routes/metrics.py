"""GET /metrics: Prometheus' text format (prometheus-client), for administrators' tokens or
the scrape token CORRAL_METRICS_TOKEN.

Database-wide values (workloads by project, cluster, type and status; queues; usage and
quotas; clusters and their agents' heartbeats; submissions, admissions, preemptions and
deletions) are read at each scrape from what the database keeps (``services.metrics``), so
every replica reports the same. Request latency is this server process's own.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.api.deps import Bearer, current_principal
from corral.db.engine import read_tx
from corral.domain.clusters import ClusterHealth, cluster_health
from corral.domain.resources import RESOURCE_NAMES
from corral.services import metrics as metric_service

router = APIRouter(tags=["metrics"])

# Request latency buckets (seconds): the list's target is 20 ms at p99.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def _amount(resource: str, value: int) -> float:
    """Base units: CPU in cores (stored in millicores), memory and storage in bytes, GPUs."""
    return value / 1000 if resource == "cpu" else float(value)


class DatabaseCollector(Collector):
    def __init__(self, engine: Any, unhealthy_after_s: float) -> None:
        self.engine, self.unhealthy_after_s = engine, unhealthy_after_s
        self.tally = metric_service.EventTally()

    def collect(self) -> Iterator[Metric]:
        with read_tx(self.engine) as conn:
            snap = metric_service.snapshot(conn, self.tally)
        workloads = GaugeMetricFamily("corral_workloads", "Workloads by project, cluster, type and status",
                                      labels=["project", "cluster", "type", "status"])
        for project, cluster, type_, status, count in snap.workloads:
            workloads.add_metric([project, cluster, type_, status], count)
        yield workloads
        queued = GaugeMetricFamily("corral_queue_depth", "Workloads waiting for admission (Pending)",
                                   labels=["project", "cluster"])
        used = GaugeMetricFamily("corral_resources_used", "Resources held by admitted workloads (cpu in cores, "
                                 "memory and ephemeral_storage in bytes)", labels=["project", "cluster", "resource"])
        for project, cluster, usage, depth in snap.usage:
            queued.add_metric([project, cluster], depth)
            for n in RESOURCE_NAMES:
                used.add_metric([project, cluster, n], _amount(n, usage[n]))
        yield queued
        yield used
        oldest = GaugeMetricFamily("corral_queue_oldest_wait_seconds",
                                   "How long the project's longest-waiting Pending workload has waited",
                                   labels=["project"])
        for project, at in snap.oldest_pending:
            oldest.add_metric([project], max(0.0, (snap.now - at).total_seconds()))
        yield oldest
        guaranteed = GaugeMetricFamily("corral_quota_guaranteed", "Quota guarantee", labels=["project", "cluster",
                                                                                            "resource"])
        limit = GaugeMetricFamily("corral_quota_limit", "Quota limit (absent: unbounded)",
                                  labels=["project", "cluster", "resource"])
        for project, cluster, g, lim in snap.quotas:
            for n in RESOURCE_NAMES:
                guaranteed.add_metric([project, cluster, n], _amount(n, g[n]))
                if lim[n] is not None:
                    limit.add_metric([project, cluster, n], _amount(n, lim[n]))
        yield guaranteed
        yield limit
        capacity = GaugeMetricFamily("corral_cluster_capacity", "Cluster capacity", labels=["cluster", "resource"])
        health = GaugeMetricFamily("corral_cluster_health", "1 for the cluster's health: verifying (never heard "
                                   "from), healthy, unhealthy (its agent silent)", labels=["cluster", "kind", "status"])
        age = GaugeMetricFamily("corral_agent_heartbeat_age_seconds", "Seconds since the cluster's agent was last "
                                "heard from (absent: never)", labels=["cluster"])
        for name, kind, cap, last in snap.clusters:
            for n in RESOURCE_NAMES:
                capacity.add_metric([name, n], _amount(n, cap[n]))
            state = cluster_health(last, snap.now, self.unhealthy_after_s)
            for h in ClusterHealth:
                health.add_metric([name, kind, h.value], 1.0 if h is state else 0.0)
            if last is not None:
                age.add_metric([name], max(0.0, (snap.now - last).total_seconds()))
        yield capacity
        yield health
        yield age
        for counter in sorted(set(metric_service.COUNTED_EVENTS.values())):
            family = CounterMetricFamily(f"corral_{counter}", f"Workload {counter} recorded (events)",
                                         labels=["project"])
            for (name, project), total in sorted(snap.events.items()):
                if name == counter:
                    family.add_metric([project], total)
            yield family


class RequestTimer:
    """Times every HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app, self.histogram = app, histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.histogram.labels(scope["method"], route_template(scope), str(status[0])) \
                .observe(time.perf_counter() - start)


def route_template(scope: Scope) -> str:
    """The matched route's path template with its router's prefix ("/api/v1/workloads/{workload_id}"):
    a route of an included router may know only its own part, so the prefix is what precedes
    the part its pattern matches. "unmatched" when no route matched (a 404 for any path)."""
    route = scope.get("route")
    template, pattern = getattr(route, "path", None), getattr(route, "path_regex", None)
    if not template or pattern is None:
        return "unmatched"
    path = scope.get("path", "")
    for i, char in enumerate(path):
        if char == "/" and pattern.match(path[i:]):
            return path[:i] + template
    return template


def install(app: FastAPI) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(app.state.engine, app.state.settings.cluster_unhealthy_after_s))
    histogram = Histogram("corral_http_request_duration_seconds", "HTTP request latency (this server process)",
                          ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=registry)
    app.state.metrics_registry = registry
    app.add_middleware(RequestTimer, histogram=histogram)
    app.include_router(router)


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(request: Request, credentials: Bearer) -> Response:
    """Prometheus metrics. Send an administrator's API token, or CORRAL_METRICS_TOKEN."""
    scrape_token = request.app.state.settings.metrics_token
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if not (scrape_token and scheme.lower() == "bearer"
            and hmac.compare_digest(given.strip().encode(), scrape_token.encode())):
        current_principal(request, credentials).require_admin()
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST,
                    headers={"Cache-Control": "no-store"})
