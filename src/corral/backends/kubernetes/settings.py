"""A Kubernetes cluster's settings: how Corral's objects are shaped there.

Read once (``KubeSettings.from_file`` for ``corral agent --kube-config FILE``, a YAML or
JSON mapping of the fields below); every field has a default that works on a plain
cluster with NVIDIA GPUs (kind, k3s). Unknown keys are an error, so a typo does not pass
silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from corral.backends.base import BackendError
from corral.backends.identity import KUBE_NAMESPACE_PREFIX

GPU_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu", "gpu.intel.com/i915")


@dataclass(frozen=True)
class KubeSettings:
    # Where the API server is: in-cluster (the agent's own service account) when neither
    # is given and the agent runs in a pod, else the kubeconfig ($KUBECONFIG, ~/.kube/config).
    kubeconfig: str | None = None
    context: str | None = None
    namespace_prefix: str = KUBE_NAMESPACE_PREFIX
    # The extended resource a GPU is (the device plugin's name): nvidia.com/gpu, amd.com/gpu.
    gpu_resource: str = "nvidia.com/gpu"
    # Put on every pod (GPU node pools are often tainted and labelled).
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    image_pull_secrets: tuple[str, ...] = ()
    # Images for the types whose spec names none.
    runtime_image: str = "python:3.12-slim"  # batch commands, model downloads
    inference_image: str = "vllm/vllm-openai:latest"
    workspace_image: str = "quay.io/jupyter/base-notebook:latest"
    # The project's model store: one PersistentVolumeClaim per project, mounted at /models.
    models_size: str = "100Gi"
    models_access_mode: str = "ReadWriteMany"  # ReadWriteOnce on single-node clusters (kind, k3s)
    models_storage_class: str | None = None
    # Services on the apps domain (security.md): each workload's host w<id>.<apps_domain>
    # is routed to Corral's proxy (never straight to the workload, which would skip its
    # sign-in), by an Ingress (ingress_class) or a Gateway API HTTPRoute (gateway), made in
    # proxy_namespace beside Corral's Service.
    apps_domain: str | None = None
    ingress_class: str | None = None
    gateway: str | None = None  # "namespace/name" of the Gateway an HTTPRoute attaches to
    proxy_service: str = "corral"  # Corral's own Service (its proxy), in proxy_namespace
    proxy_namespace: str = "corral-system"
    proxy_port: int = 8000
    # A Kueue LocalQueue for every Job, JobSet, PyTorchJob and Deployment (label
    # kueue.x-k8s.io/queue-name): the cluster's own queue then admits them, after Corral's quota.
    queue_name: str | None = None
    # Corral priority (low, medium, high) -> a PriorityClass the cluster has, for the
    # kubelet's and the scheduler's own choices (eviction order, preemption by others).
    priority_classes: Mapping[str, str] = field(default_factory=dict)
    # Multi-node training: use these operators' CRDs when the cluster has them.
    prefer_crds: bool = True
    # How long stop() waits for the objects to be gone before DeleteFailed.
    delete_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        if not self.gpu_resource or "/" not in self.gpu_resource:
            raise BackendError(f"gpu_resource {self.gpu_resource!r}: expected an extended resource name such as "
                               f"{' or '.join(GPU_RESOURCES)}")
        if self.gateway is not None and self.gateway.count("/") != 1:
            raise BackendError(f"gateway {self.gateway!r}: expected NAMESPACE/NAME")
        if self.models_access_mode not in ("ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"):
            raise BackendError(f"models_access_mode {self.models_access_mode!r}: expected ReadWriteMany, "
                               f"ReadWriteOnce or ReadWriteOncePod")
        object.__setattr__(self, "node_selector", {str(k): str(v) for k, v in dict(self.node_selector).items()})
        object.__setattr__(self, "tolerations", tuple(dict(t) for t in self.tolerations))
        object.__setattr__(self, "image_pull_secrets", tuple(self.image_pull_secrets))
        unknown = set(self.priority_classes) - {"low", "medium", "high"}
        if unknown:
            raise BackendError(f"priority_classes: {', '.join(sorted(unknown))}: expected low, medium or high")
        object.__setattr__(self, "priority_classes", {str(k): str(v) for k, v in dict(self.priority_classes).items()})

    @property
    def routes(self) -> str | None:
        """How the apps domain reaches Corral's proxy: "httproute", "ingress" or None."""
        if not self.apps_domain:
            return None
        return "httproute" if self.gateway else "ingress" if self.ingress_class else None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> KubeSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BackendError(f"unknown kubernetes setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            return cls(**dict(data))
        except TypeError as exc:
            raise BackendError(f"kubernetes settings: {exc}") from exc

    @classmethod
    def from_file(cls, path: str | Path | None) -> KubeSettings:
        if path is None:
            return cls()
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise BackendError(f"cannot read kubernetes settings {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise BackendError(f"kubernetes settings {path}: expected a mapping of settings")
        return cls.from_mapping(data)
