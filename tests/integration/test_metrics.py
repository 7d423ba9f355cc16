"""GET /metrics, scraped and parsed as Prometheus parses it: who may scrape, workloads by
project, cluster, type and status from the kept counts, queues, quotas, clusters and their
agents' heartbeats, event counters that grow by exactly what happened, request latency."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from corral.services import metrics as metric_service
from tests.integration.conftest import submit


def _scrape(client) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:  # type: ignore[no-untyped-def]
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


def _value(samples, name, **labels) -> float | None:  # type: ignore[no-untyped-def]
    return samples.get(name, {}).get(tuple(sorted(labels.items())))


def test_only_admins_and_the_scrape_token_may_scrape(world):
    assert world.api.anonymous.get("/metrics").status_code == 401
    assert world.alice.get("/metrics").status_code == 403
    assert world.admin.get("/metrics").status_code == 200
    assert world.api.as_token("crl_not-a-token").get("/metrics").status_code == 401
    app = world.api.client.app
    app.state.settings = app.state.settings.model_copy(update={"metrics_token": "scrape-secret-1234"})
    assert world.api.as_token("scrape-secret-1234").get("/metrics").status_code == 200
    assert world.api.as_token("scrape-secret-12345").get("/metrics").status_code == 401
    # The scrape token is for /metrics only.
    assert world.api.as_token("scrape-secret-1234").get("/api/v1/projects").status_code == 401


def test_workloads_queues_quotas_and_clusters(world):
    for i in range(3):
        assert submit(world.admin, name=f"v{i}").status_code == 201
    assert submit(world.admin, name="t", type="training", dataset="d", project="speech").status_code == 201
    samples = _scrape(world.admin)
    assert _value(samples, "corral_workloads", project="vision", cluster="gpu-a", type="custom",
                  status="Pending") == 3
    assert _value(samples, "corral_workloads", project="speech", cluster="gpu-a", type="training",
                  status="Pending") == 1
    assert _value(samples, "corral_queue_depth", project="vision", cluster="gpu-a") == 3
    assert 0 <= _value(samples, "corral_queue_oldest_wait_seconds", project="vision") < 60
    assert _value(samples, "corral_quota_guaranteed", project="vision", cluster="gpu-a", resource="cpu") == 64
    assert _value(samples, "corral_quota_limit", project="vision", cluster="gpu-a", resource="memory") == 512 * 2**30
    assert _value(samples, "corral_cluster_capacity", cluster="gpu-a", resource="gpu") == 16
    assert _value(samples, "corral_cluster_health", cluster="gpu-a", kind="kubernetes", status="healthy") == 1
    assert _value(samples, "corral_cluster_health", cluster="gpu-a", kind="kubernetes", status="unhealthy") == 0
    assert 0 <= _value(samples, "corral_agent_heartbeat_age_seconds", cluster="gpu-a") < 60
    # An unbounded limit is left out.
    assert world.admin.put("/api/v1/projects/speech/quotas/gpu-a",
                           json={"guaranteed": {"gpu": 1}, "limit": "unbounded"}).status_code == 200
    samples = _scrape(world.admin)
    assert _value(samples, "corral_quota_limit", project="speech", cluster="gpu-a", resource="gpu") is None
    assert _value(samples, "corral_quota_guaranteed", project="speech", cluster="gpu-a", resource="gpu") == 1


def test_event_counters_grow_by_what_happened(world, monkeypatch):
    monkeypatch.setattr(metric_service, "EVENT_SETTLE", metric_service.EVENT_SETTLE * 0)
    ids = [submit(world.admin, name=f"c{i}").json()["id"] for i in range(2)]
    first = _scrape(world.admin)
    assert _value(first, "corral_submissions_total", project="vision") == 2
    for i in range(3):
        assert submit(world.admin, name=f"d{i}").status_code == 201
    assert world.admin.delete(f"/api/v1/workloads/{ids[0]}").status_code == 202
    second = _scrape(world.admin)
    assert _value(second, "corral_submissions_total", project="vision") == 5
    assert _value(second, "corral_deletions_total", project="vision") == 1
    assert _value(_scrape(world.admin), "corral_submissions_total", project="vision") == 5  # counted once


def test_request_latency_by_route_template(world):
    for _ in range(4):
        assert world.alice.get("/api/v1/workloads", params={"project": "vision"}).status_code == 200
    assert world.alice.get("/api/v1/workloads/999999").status_code == 404
    samples = _scrape(world.admin)
    assert _value(samples, "corral_http_request_duration_seconds_count", method="GET", route="/api/v1/workloads",
                  status="200") >= 4
    assert _value(samples, "corral_http_request_duration_seconds_count", method="GET",
                  route="/api/v1/workloads/{workload_id}", status="404") >= 1
    assert _value(samples, "corral_http_request_duration_seconds_bucket", method="GET", route="/api/v1/workloads",
                  status="200", le="+Inf") >= 4
