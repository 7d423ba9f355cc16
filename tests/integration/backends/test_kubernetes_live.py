"""The Kubernetes backend against a live cluster: set KUBECONFIG (kind, k3s or a real one).

    kind create cluster
    KUBECONFIG=~/.kube/config .venv/bin/pytest tests/integration/backends/test_kubernetes_live.py \
        tests/conformance -k kubernetes

Skipped here with ``LIVE_KUBERNETES_SKIP`` (the one skip CI allows, see tests/conftest.py):
no Kubernetes API server can run on these machines, and no stand-in is a test of one.
Each test works in namespaces of its own (prefix ``corral-t<random>-``), removed after it.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from corral.backends.base import Observation
from corral.backends.recipes import ComponentRef
from corral.domain.statuses import ComponentStatus as S
from tests.conftest import LIVE_KUBERNETES_SKIP

pytestmark = pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason=LIVE_KUBERNETES_SKIP)
TIMEOUT = 240.0


@pytest.fixture
def kube() -> Iterator[Any]:
    from corral.backends.kubernetes import KubernetesBackend, KubeSettings

    prefix = f"corral-t{uuid.uuid4().hex[:6]}-"
    settings = KubeSettings(kubeconfig=os.environ["KUBECONFIG"], namespace_prefix=prefix,
                            models_access_mode="ReadWriteOnce", models_size="1Gi", delete_timeout_s=120)
    backend = KubernetesBackend(settings)
    yield backend
    backend.close()
    for namespace in backend.core.list_namespace().items:
        if namespace.metadata.name.startswith(prefix):
            backend.core.delete_namespace(namespace.metadata.name)


def run(backend: Any, workload_id: int, spec: dict[str, Any], kind: str = "job",
        memory: int = 256 << 20) -> list[int]:
    spec = {"name": f"t{workload_id}", "project": "live", **spec}
    refs = [ComponentRef(workload_id * 10, kind, cpu_millicores=250, memory_bytes=memory)]
    if kind == "server":
        refs.append(ComponentRef(workload_id * 10 + 1, "endpoint"))
    for launch in backend.build_launches(workload_id=workload_id, project="live", workload_type=spec["type"],
                                         spec=spec, components=refs, secret_env={"CORRAL_SERVICE_TOKEN": "t"}):
        backend.start(launch)
    return [r.id for r in refs]


def wait_for(backend: Any, cid: int, status: S) -> Observation:
    deadline = time.monotonic() + TIMEOUT
    seen: list[Observation] = []
    while time.monotonic() < deadline:
        for obs in backend.observe():
            seen.append(obs)
            if obs.component_id == cid and obs.status is status:
                return obs
        backend.wait_for_changes(1.0)
    raise AssertionError(f"component {cid} never {status.value}; saw {[(o.status, o.reason) for o in seen]}")


def test_a_job_completes_with_its_logs_and_is_deleted(kube: Any) -> None:
    (cid,) = run(kube, 1, {"type": "custom", "image": "busybox", "command": ["sh", "-c", "echo hello corral"]})
    done = wait_for(kube, cid, S.COMPLETED)
    assert done.exit_code == 0
    assert "hello corral" in kube.logs(cid)
    kube.start(kube.build_launches(workload_id=1, project="live", workload_type="custom",
                                   spec={"name": "t1", "project": "live", "type": "custom", "image": "busybox",
                                         "command": ["true"]}, components=[ComponentRef(cid, "job")])[0])
    assert len(kube.batch.list_namespaced_job(f"{kube.settings.namespace_prefix}live").items) == 1  # no duplicate
    kube.stop(cid)
    assert wait_for(kube, cid, S.DELETED).reason == "deleted"


def test_image_pull_errors_are_pending_with_the_reason(kube: Any) -> None:
    (cid,) = run(kube, 2, {"type": "custom", "image": "registry.invalid/corral/nope:1", "command": ["true"]})
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        found = [o for o in kube.observe() if o.component_id == cid and "cannot pull image" in o.reason]
        if found:
            assert found[0].status is S.PENDING
            return
        kube.wait_for_changes(1.0)
    raise AssertionError("no image pull reason")


def test_out_of_memory_is_failed(kube: Any) -> None:
    (cid,) = run(kube, 3, {"type": "custom", "image": "python:3.12-slim",
                           "command": ["python", "-c", "b = bytearray(512 * 2**20); print(len(b))"]}, memory=64 << 20)
    failed = wait_for(kube, cid, S.FAILED)
    assert "out of memory" in failed.reason and failed.exit_code == -9  # SIGKILL, as subprocess says it


def test_a_service_gets_an_endpoint(kube: Any) -> None:
    server, endpoint = run(kube, 4, {"type": "custom", "image": "python:3.12-slim", "service": True,
                                     "command": "python -m http.server $PORT"}, kind="server")
    assert wait_for(kube, endpoint, S.COMPLETED).reason == "Service created"
    running = wait_for(kube, server, S.RUNNING)
    assert running.endpoint_url == f"http://w4.{kube.settings.namespace_prefix}live.svc.cluster.local:8000/"


def test_every_type_is_accepted_by_the_api_server(kube: Any) -> None:
    """Server-side dry run of every manifest: the cluster's own validation and admission."""
    from tests.unit.kubernetes.test_manifests import SPECS, _spec

    from corral.backends.kubernetes.dryrun import render_workload

    for name in SPECS:
        objects = render_workload(_spec(name), kube.settings, workload_id=90, crds=kube.crds())
        for obj in objects:
            resource = kube._dynamic().resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            if obj["kind"] == "Namespace":
                if not any(n.metadata.name == obj["metadata"]["name"] for n in kube.core.list_namespace().items):
                    resource.create(body=obj)
                continue
            resource.create(body=obj, namespace=obj["metadata"].get("namespace"), dry_run="All")


def test_capacity_and_discovery(kube: Any) -> None:
    capacity = kube.capacity()
    assert capacity.nodes and all(n.cpu_millicores > 0 and n.memory_bytes > 0 for n in capacity.nodes)
    run(kube, 5, {"type": "custom", "image": "busybox", "command": ["sleep", "5"]})  # makes the namespace
    namespace = f"{kube.settings.namespace_prefix}live"
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "theirs"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "theirs"}}, "template": {
                "metadata": {"labels": {"app": "theirs"}},
                "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                                         "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}}}]}}}}
    kube.discover()  # its watches start
    kube.apps.create_namespaced_deployment(namespace, body)
    deadline = time.monotonic() + 60
    while f"{namespace}/deployment/theirs" not in (found := {d.native_name: d for d in kube.discover()}):
        assert time.monotonic() < deadline, found
        time.sleep(0.5)
    theirs = found[f"{namespace}/deployment/theirs"]
    assert (theirs.project, theirs.cpu_millicores, theirs.memory_bytes) == ("live", 200, 64 << 20)
    assert not any(name.startswith(f"{namespace}/job/w5") for name in found)  # ours is not "found"
