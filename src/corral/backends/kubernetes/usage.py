"""What running components use on Kubernetes (``KubernetesBackend.usage``): the metrics API.

One list call per sample: ``metrics.k8s.io/v1beta1`` PodMetrics of Corral's pods in all
namespaces (``GET /apis/metrics.k8s.io/v1beta1/pods?labelSelector=...``, served by
metrics-server, or by anything else that implements the API such as prometheus-adapter).
A component's CPU and memory are the sums over its pods' containers:

- CPU: metrics-server's rate over its window (``window``, 10-30 s; the kubelet's
  ``usageNanoCores``), in millicores; the Usage contract's "mean since the previous
  sample" is the mean over that window here;
- memory: the working set (what the local backend counts too: resident less reclaimable
  page cache), in bytes;
- GPU utilisation and GPU memory: None. The metrics API carries CPU and memory only; a
  GPU's use needs NVIDIA's DCGM exporter (or AMD's device metrics exporter) scraped by
  Prometheus, which Corral does not read yet.

``sampled_at`` is the metrics' own timestamp (the newest of the component's pods), and a
component whose metrics did not move on since the previous call is not sent again (the
agent asks every 10 s; metrics-server renews every 15 s by default), so no sample is
stored twice.

Without a metrics API (no metrics-server: 404; registered but down: 503; the agent not
allowed to read it: 403) ``usage`` returns [] and says why once in the agent's log, then
again only when the answer changes. Quantities ("250123456n", "102400Ki") are read with
the official client's ``parse_quantity``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from corral.backends.base import Usage
from corral.backends.kubernetes import labels as L
from corral.backends.kubernetes.cluster import quantity

log = logging.getLogger("corral.backends.kubernetes")

GROUP, VERSION, PLURAL = "metrics.k8s.io", "v1beta1", "pods"
REQUEST_TIMEOUT_S = 5  # the agent samples in its loop: a metrics API that hangs may not hold it longer


def _timestamp(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _amount(value: Any, scale: int) -> int | None:
    """A quantity ("250m", "1250123456n", "512Mi") times ``scale``, whole; None when absent
    or unreadable (that container's value is unknown, the others still count)."""
    if value in (None, ""):
        return None
    try:
        return int(quantity(value) * scale)
    except (ValueError, ArithmeticError):
        return None


def usage_from_pod_metrics(items: Iterable[Mapping[str, Any]], components: Mapping[tuple[str, str], int],
                           now: datetime | None = None) -> list[Usage]:
    """PodMetrics items (as the API answers them, dicts) -> one ``Usage`` per component.
    ``components``: (namespace, pod name) -> component id (Corral's pods, from the pod
    watch); an item's own ``corral.dev/component`` label counts where the map lacks it.
    Pods of no component are left out."""
    now = now or datetime.now(UTC)
    cpu: dict[int, int] = {}
    memory: dict[int, int] = {}
    at: dict[int, datetime] = {}
    for item in items:
        meta = item.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        cid = components.get(key)
        if cid is None:
            cid = L.component_of(meta.get("labels"))
        if cid is None:
            continue
        at[cid] = max(filter(None, (at.get(cid), _timestamp(item.get("timestamp")) or now)))
        for container in item.get("containers") or ():
            use = container.get("usage") or {}
            if (millicores := _amount(use.get("cpu"), 1000)) is not None:
                cpu[cid] = cpu.get(cid, 0) + millicores
            if (count := _amount(use.get("memory"), 1)) is not None:
                memory[cid] = memory.get(cid, 0) + count
    # GPU fields stay None: the metrics API has no GPUs (DCGM exporter's metrics would).
    return [Usage(cid, at[cid], cpu.get(cid), memory.get(cid), None, None) for cid in sorted(at)]


def metrics_problem(status: int | None, reason: str | None = None) -> str:
    """Why the metrics API gave nothing, in words for the agent's log."""
    if status == 404:
        return ("the cluster has no metrics API (metrics.k8s.io/v1beta1 answered 404): install metrics-server "
                "for CPU and memory use over time")
    if status == 503:
        return ("the metrics API is registered but does not answer (503): is metrics-server running? "
                "(kubectl -n kube-system get pods -l k8s-app=metrics-server)")
    if status in (401, 403):
        return (f"the agent may not read pod metrics ({status}): grant get and list on pods.metrics.k8s.io "
                f"(deploy/kubernetes/agent-rbac.yaml)")
    if status is None:
        return f"cannot reach the metrics API: {reason or 'no answer'}"
    return f"the metrics API answered {status} {reason or ''}".rstrip()


class PodMetrics:
    """Reads the metrics API for ``KubernetesBackend.usage``; keeps what it sent last."""

    def __init__(self, custom_api: Any) -> None:
        self.custom = custom_api
        self.problem: str | None = None  # what was last logged; None: the API answers
        self._sent: dict[int, datetime] = {}  # component -> the metrics' timestamp it last sent

    def read(self) -> list[Mapping[str, Any]] | None:
        """The PodMetrics items of Corral's pods; None (said once in the log) when the
        metrics API is absent, down or forbidden."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            answer = self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, label_selector=L.CORRAL_SELECTOR,
                                                            _request_timeout=REQUEST_TIMEOUT_S)
        except ApiException as exc:
            self.note_problem(metrics_problem(exc.status, exc.reason))
            return None
        except (HTTPError, OSError) as exc:
            self.note_problem(metrics_problem(None, str(exc)[:200]))
            return None
        self.note_ok()
        return list((answer or {}).get("items") or ())

    def note_problem(self, problem: str) -> None:
        if problem != self.problem:  # once, not every sample
            log.warning("pod metrics: %s; no use over time is reported meanwhile", problem)
            self.problem = problem

    def note_ok(self) -> None:
        if self.problem is not None:
            log.info("pod metrics: the metrics API answers again; use over time is reported")
            self.problem = None

    def fresh(self, samples: list[Usage]) -> list[Usage]:
        """The samples whose metrics moved on since the previous call (the others were sent)."""
        fresh = [u for u in samples if u.component_id not in self._sent or u.sampled_at > self._sent[u.component_id]]
        self._sent = {u.component_id: u.sampled_at for u in samples}  # components gone from the list drop out
        return fresh

    def sample(self, components: Mapping[tuple[str, str], int], forgotten: Iterable[int] = ()) -> list[Usage]:
        items = self.read()
        if items is None:
            return []
        skip = set(forgotten)
        return self.fresh([u for u in usage_from_pod_metrics(items, components) if u.component_id not in skip])
