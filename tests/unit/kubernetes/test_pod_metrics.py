"""Use over time on Kubernetes: PodMetrics documents (as metrics-server answers
``GET /apis/metrics.k8s.io/v1beta1/pods``) -> one Usage per component. The call itself is
in the live tests (tests/integration/backends/test_kubernetes_live_results.py)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
import yaml

from corral.backends.base import Usage
from corral.backends.kubernetes import labels as L
from corral.backends.kubernetes.usage import PodMetrics, metrics_problem, usage_from_pod_metrics
from tests.unit.kubernetes.test_deploy_manifests import DEPLOY, grants

T = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

# A metrics-server 0.7 answer: a two-node training job (component 70, two pods, one with a
# sidecar), an inference replica whose item carries its labels (component 81, not yet in
# the pod watch), and a pod that is not Corral's.
POD_METRICS_LIST = {
    "kind": "PodMetricsList",
    "apiVersion": "metrics.k8s.io/v1beta1",
    "metadata": {},
    "items": [
        {"metadata": {"name": "w7-job-0-x5k2p", "namespace": "corral-vision",
                      "creationTimestamp": "2026-01-02T03:04:20Z"},
         "timestamp": "2026-01-02T03:04:05Z", "window": "15.012s",
         "containers": [{"name": "main", "usage": {"cpu": "1250123456n", "memory": "524288Ki"}},
                        {"name": "log-shipper", "usage": {"cpu": "2m", "memory": "12Mi"}}]},
        {"metadata": {"name": "w7-job-1-9qzvd", "namespace": "corral-vision",
                      "creationTimestamp": "2026-01-02T03:04:20Z"},
         "timestamp": "2026-01-02T03:03:58Z", "window": "14.87s",
         "containers": [{"name": "main", "usage": {"cpu": "998765u", "memory": "536870912"}}]},
        {"metadata": {"name": "w8-server-6d4f9b7c8-kq2xl", "namespace": "corral-vision",
                      "creationTimestamp": "2026-01-02T03:04:20Z",
                      "labels": {**L.labels("vision", 8, 81, "inference", "server"),
                                 "pod-template-hash": "6d4f9b7c8"}},
         "timestamp": "2026-01-02T03:04:01Z", "window": "20s",
         "containers": [{"name": "main", "usage": {"cpu": "3", "memory": "16Gi"}}]},
        {"metadata": {"name": "coredns-7db6d8ff4d-2lbqv", "namespace": "kube-system",
                      "creationTimestamp": "2026-01-02T03:04:20Z"},
         "timestamp": "2026-01-02T03:04:05Z", "window": "10.2s",
         "containers": [{"name": "coredns", "usage": {"cpu": "1838125n", "memory": "13796Ki"}}]},
    ],
}
PODS = {("corral-vision", "w7-job-0-x5k2p"): 70, ("corral-vision", "w7-job-1-9qzvd"): 70}


def test_each_component_sums_its_pods_containers() -> None:
    samples = usage_from_pod_metrics(POD_METRICS_LIST["items"], PODS, now=T)
    assert samples == [
        # 1250.123456 + 2 + 998.765 millicores (cut to whole ones); 512 MiB + 12 MiB + 512 MiB
        Usage(70, T, 1250 + 2 + 998, (512 + 12 + 512) << 20, None, None),
        Usage(81, datetime(2026, 1, 2, 3, 4, 1, tzinfo=UTC), 3000, 16 << 30, None, None),
    ]  # the newest timestamp of its pods; GPUs None (no DCGM exporter read); coredns is not ours


def test_a_pod_without_usage_or_timestamp() -> None:
    items = [{"metadata": {"name": "w7-job-0-x5k2p", "namespace": "corral-vision"}, "window": "15s",
              "containers": [{"name": "main", "usage": {}}]}]
    (sample,) = usage_from_pod_metrics(items, PODS, now=T)
    assert sample == Usage(70, T, None, None, None, None)  # the cluster cannot tell (yet)
    assert usage_from_pod_metrics([], PODS, now=T) == []


def test_a_quantity_the_client_cannot_read_is_unknown_not_a_guess() -> None:
    items = [{"metadata": {"name": "w7-job-0-x5k2p", "namespace": "corral-vision"},
              "timestamp": "2026-01-02T03:04:05Z",
              "containers": [{"name": "main", "usage": {"cpu": "1.2.3", "memory": "64Mi"}},
                             {"name": "sidecar", "usage": {"cpu": "100m", "memory": "lots"}}]}]
    assert usage_from_pod_metrics(items, PODS) == [Usage(70, T, 100, 64 << 20)]


def test_samples_are_sent_once_per_metrics_window() -> None:
    reader = PodMetrics(custom_api=None)
    first = usage_from_pod_metrics(POD_METRICS_LIST["items"], PODS, now=T)
    assert reader.fresh(first) == first
    assert reader.fresh(first) == []  # metrics-server did not renew them: nothing stored twice
    later = [Usage(70, datetime(2026, 1, 2, 3, 4, 20, tzinfo=UTC), 900, 1 << 30)] + first[1:]
    assert reader.fresh(later) == later[:1]
    assert reader.fresh([]) == [] and reader.fresh(first[1:]) == first[1:]  # gone from a list: forgotten


def test_no_metrics_api_is_said_once_then_again_when_it_changes(caplog: pytest.LogCaptureFixture) -> None:
    reader = PodMetrics(custom_api=None)
    caplog.set_level(logging.INFO, logger="corral.backends.kubernetes")
    for _ in range(3):  # three samples, 10 s apart
        reader.note_problem(metrics_problem(404, "Not Found"))
    reader.note_problem(metrics_problem(503, "Service Unavailable"))
    reader.note_ok()
    reader.note_ok()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert "no metrics API" in lines[0] and "install metrics-server" in lines[0]
    assert "does not answer (503)" in lines[1]
    assert "answers again" in lines[2]


def test_problems_say_what_to_do() -> None:
    assert "grant get and list on pods.metrics.k8s.io" in metrics_problem(403, "Forbidden")
    assert metrics_problem(None, "Connection refused") == "cannot reach the metrics API: Connection refused"
    assert metrics_problem(500, "Internal Server Error") == "the metrics API answered 500 Internal Server Error"


def test_the_agent_may_read_pod_metrics() -> None:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "agent-rbac.yaml").read_text()) if d]
    rules = next(d for d in docs if d["kind"] == "ClusterRole")["rules"]
    assert grants(rules, "metrics.k8s.io", "pods", "list") and grants(rules, "metrics.k8s.io", "pods", "get")
    assert not grants(rules, "metrics.k8s.io", "pods", "create")
