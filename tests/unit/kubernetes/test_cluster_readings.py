"""Capacity from nodes' allocatable resources, discovered workloads' full resources, and
the watch cache's re-list (410 Gone) semantics: pure readings of official model objects."""

from __future__ import annotations

from kubernetes.client import (V1Container, V1Deployment, V1DeploymentSpec, V1Job, V1JobSpec, V1LabelSelector, V1Node,
                               V1NodeSpec, V1NodeStatus, V1ObjectMeta, V1OwnerReference, V1Pod, V1PodSpec,
                               V1PodTemplateSpec, V1ResourceRequirements)

from corral.backends.kubernetes.cluster import discovered, is_top_level, nodes_capacity
from corral.backends.kubernetes.watch import ObjectCache


def node(name: str, allocatable: dict[str, str], labels: dict[str, str] | None = None,
         cordoned: bool = False) -> V1Node:
    return V1Node(metadata=V1ObjectMeta(name=name, labels=labels), spec=V1NodeSpec(unschedulable=cordoned),
                  status=V1NodeStatus(allocatable=allocatable, capacity={"cpu": "999"}))


def test_capacity_is_allocatable_with_the_configured_gpu_resource() -> None:
    nodes = [node("gpu-1", {"cpu": "63500m", "memory": "251Gi", "nvidia.com/gpu": "8", "ephemeral-storage": "100G"},
                  {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}),
             node("cpu-1", {"cpu": "16", "memory": "64Gi"}),
             node("cordoned", {"cpu": "16", "memory": "64Gi"}, cordoned=True)]
    gpu1, cpu1 = nodes_capacity(nodes, "nvidia.com/gpu")
    assert (gpu1.name, gpu1.cpu_millicores, gpu1.memory_bytes, len(gpu1.gpus)) == ("gpu-1", 63500, 251 << 30, 8)
    assert gpu1.gpu_vendor == "nvidia" and gpu1.gpu_model == "NVIDIA-H100-80GB-HBM3"
    assert gpu1.ephemeral_storage_bytes == 100 * 10**9
    assert (cpu1.cpu_millicores, cpu1.gpus) == (16000, ())
    amd = nodes_capacity([node("mi", {"cpu": "1", "memory": "1Gi", "amd.com/gpu": "4"})], "amd.com/gpu")[0]
    assert (len(amd.gpus), amd.gpu_vendor) == (4, "amd")


def _template(requests: dict[str, str], limits: dict[str, str]) -> V1PodTemplateSpec:
    container = V1Container(name="c", image="nginx", command=["nginx"],
                            resources=V1ResourceRequirements(requests=requests, limits=limits))
    return V1PodTemplateSpec(spec=V1PodSpec(containers=[container, V1Container(name="side", image="envoy",
                             resources=V1ResourceRequirements(requests={"cpu": "500m", "memory": "256Mi"}))]))


def test_discovered_workloads_count_with_their_full_resources() -> None:
    deployment = V1Deployment(
        api_version="apps/v1", metadata=V1ObjectMeta(name="web", namespace="corral-vision"),
        spec=V1DeploymentSpec(replicas=3, selector=V1LabelSelector(),
                              template=_template({"cpu": "2", "memory": "4Gi"}, {"nvidia.com/gpu": "1"})))
    found = discovered("Deployment", deployment, "vision", "nvidia.com/gpu")
    assert (found.native_name, found.kind, found.project) == ("corral-vision/deployment/web", "deployment", "vision")
    assert (found.gpu, found.cpu_millicores, found.memory_bytes) == (3, 3 * 2500, 3 * ((4 << 30) + (256 << 20)))
    job = V1Job(metadata=V1ObjectMeta(name="j", namespace="n"),
                spec=V1JobSpec(parallelism=2, template=_template({}, {"cpu": "1", "memory": "1Gi"})))
    found = discovered("Job", job, "vision", "nvidia.com/gpu")
    assert (found.gpu, found.cpu_millicores, found.memory_bytes) == (0, 2 * 1500, 2 * ((1 << 30) + (256 << 20)))


def test_pods_of_a_controller_are_counted_with_it() -> None:
    owned = V1Pod(metadata=V1ObjectMeta(name="web-abc", owner_references=[V1OwnerReference(
        api_version="apps/v1", kind="ReplicaSet", name="web-1", uid="u", controller=True)]))
    assert not is_top_level("Pod", owned)
    assert is_top_level("Pod", V1Pod(metadata=V1ObjectMeta(name="bare")))


def _obj(name: str, version: str) -> V1Pod:
    return V1Pod(metadata=V1ObjectMeta(name=name, namespace="ns", resource_version=version))


def test_a_relist_replaces_the_cache_and_reports_what_changed() -> None:
    cache = ObjectCache("Pod")
    cache.replace([_obj("a", "1"), _obj("b", "1")])
    cache.apply("MODIFIED", _obj("a", "2"))
    cache.apply("DELETED", _obj("b", "3"))
    assert {p.metadata.name for p in cache.items()} == {"a"}
    # the watch was away past the server's history (410 Gone): the new list is the truth
    changed = cache.replace([_obj("a", "2"), _obj("c", "5")])
    assert {p.metadata.name for p in changed} == {"c"}
    changed = cache.replace([_obj("c", "6")])
    assert {p.metadata.name for p in changed} == {"a", "c"}  # a vanished (reported as last seen), c changed
    assert [p.metadata.name for p in cache.items()] == ["c"]


def test_the_cache_finds_a_components_objects_without_a_scan() -> None:
    from corral.backends.kubernetes.labels import labels

    def owned(name: str, cid: int, version: str) -> V1Pod:
        return V1Pod(metadata=V1ObjectMeta(name=name, namespace="ns", resource_version=version,
                                           labels=labels("p", 1, cid, "custom", "job")))

    cache = ObjectCache("Pod")
    cache.replace([owned("a", 1, "1"), owned("b", 2, "1"), _obj("theirs", "1")])
    assert [p.metadata.name for p in cache.of_component(1)] == ["a"] and cache.components() == {1, 2}
    cache.apply("MODIFIED", owned("a", 3, "2"))  # relabelled: it moves
    assert cache.of_component(1) == [] and [p.metadata.name for p in cache.of_component(3)] == ["a"]
    cache.apply("DELETED", owned("b", 2, "3"))
    assert cache.components() == {3}
    cache.replace([])
    assert cache.components() == set()
