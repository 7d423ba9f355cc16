"""Pure readings of cluster objects: nodes -> capacity, found objects -> ``Discovered``.

    nodes_capacity(core.list_node().items, "nvidia.com/gpu")
    discovered(kind, obj, project, "nvidia.com/gpu")   # a Deployment a user applied with kubectl

Capacity is each schedulable node's *allocatable* resources (what pods may use, after
the kubelet's reservations), GPUs being the configured extended resource. A discovered
object counts against its project's quota with everything its pods ask for: the pod
template's containers (requests, else limits) times its replicas or parallelism.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from corral.backends.base import Discovered, GpuDevice, NodeCapacity
from corral.backends.kubernetes import labels as L
from corral.backends.kubernetes.states import _get

# Node labels that name the GPU model (NVIDIA GPU feature discovery, AMD's labeller).
GPU_MODEL_LABELS = ("nvidia.com/gpu.product", "amd.com/gpu.product-name", "amd.com/gpu.family")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "Pod")


def quantity(value: Any) -> Decimal:
    from kubernetes.utils import parse_quantity

    if value in (None, ""):
        return Decimal(0)
    return Decimal(parse_quantity(value))


def nodes_capacity(nodes: Iterable[Any], gpu_resource: str) -> tuple[NodeCapacity, ...]:
    out = []
    vendor = gpu_resource.split(".", 1)[0].split("/", 1)[0]  # nvidia.com/gpu -> nvidia
    for node in nodes:
        if _get(node, "spec", "unschedulable"):
            continue  # cordoned: takes no new pods
        allocatable = _get(node, "status", "allocatable") or {}
        gpus = int(quantity(allocatable.get(gpu_resource)))
        node_labels = _get(node, "metadata", "labels") or {}
        model = next((node_labels[k] for k in GPU_MODEL_LABELS if k in node_labels), gpu_resource)
        out.append(NodeCapacity(
            name=_get(node, "metadata", "name"),
            cpu_millicores=int(quantity(allocatable.get("cpu")) * 1000),
            memory_bytes=int(quantity(allocatable.get("memory"))),
            gpus=tuple(GpuDevice(i, vendor, model) for i in range(gpus)),
            ephemeral_storage_bytes=int(quantity(allocatable.get("ephemeral-storage"))),
        ))
    return tuple(out)


def pod_spec_of(kind: str, obj: Any) -> Any:
    if kind == "Pod":
        return _get(obj, "spec")
    return _get(obj, "spec", "template", "spec")


def copies(kind: str, obj: Any) -> int:
    if kind in ("Deployment", "StatefulSet"):
        value = _get(obj, "spec", "replicas")
        return 1 if value is None else int(value)
    if kind == "Job":
        value = _get(obj, "spec", "parallelism")
        return 1 if value is None else int(value)
    return 1


def requested(pod_spec: Any, gpu_resource: str) -> tuple[int, int, int]:
    """(GPUs, millicores, bytes) one pod asks for: its containers' requests (limits where
    a request is missing; for GPUs, limits are what counts)."""
    gpu = cpu = memory = Decimal(0)
    for container in _get(pod_spec, "containers") or ():
        requests: Mapping[str, Any] = _get(container, "resources", "requests") or {}
        limits: Mapping[str, Any] = _get(container, "resources", "limits") or {}
        gpu += quantity(limits.get(gpu_resource) or requests.get(gpu_resource))
        cpu += quantity(requests.get("cpu") or limits.get("cpu"))
        memory += quantity(requests.get("memory") or limits.get("memory"))
    return int(gpu), int(cpu * 1000), int(memory)


def is_top_level(kind: str, obj: Any) -> bool:
    """A pod made by a controller (Job, ReplicaSet, ...) is counted with its controller."""
    if kind in ("Pod", "Job"):
        owners = _get(obj, "metadata", "owner_references") or ()
        return not any(_get(o, "controller") for o in owners)
    return True


def is_running(kind: str, obj: Any) -> bool:
    """Still holding resources: a finished Job or pod does not count against quota."""
    if kind == "Pod":
        return _get(obj, "status", "phase") not in ("Succeeded", "Failed")
    if kind == "Job":
        return not any(_get(c, "type") in ("Complete", "Failed") and _get(c, "status") == "True"
                       for c in _get(obj, "status", "conditions") or ())
    return True


def discovered(kind: str, obj: Any, project: str | None, gpu_resource: str) -> Discovered:
    gpu, cpu, memory = requested(pod_spec_of(kind, obj), gpu_resource)
    n = copies(kind, obj)
    containers = _get(pod_spec_of(kind, obj), "containers") or ()
    first = containers[0] if containers else None
    command = " ".join([*(_get(first, "command") or ()), *(_get(first, "args") or ())]) or (_get(first, "image") or "")
    namespace, name = _get(obj, "metadata", "namespace"), _get(obj, "metadata", "name")
    return Discovered(native_name=f"{namespace}/{kind.lower()}/{name}", kind=kind.lower(), command=command,
                      started_at=_get(obj, "metadata", "creation_timestamp"), project=project,
                      gpu=gpu * n, cpu_millicores=cpu * n, memory_bytes=memory * n,
                      user=(_get(obj, "metadata", "annotations") or {}).get(L.SUBMITTER))
