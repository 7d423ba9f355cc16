"""What the Kubernetes backend's observe costs with a thousand components (no cluster:
its watch caches filled with official model objects, as the watch streams fill them).

    .venv/bin/python bench/kubernetes_observe.py

Prints the time of a full recomputation (all_observations at agent start), of an observe
after 10 components changed, and of an idle observe (nothing changed: the agent polls).
"""

from __future__ import annotations

import socket
import time

from kubernetes import client
from kubernetes.client import (V1Container, V1ContainerState, V1ContainerStateRunning, V1ContainerStatus, V1Job,
                               V1JobSpec, V1ObjectMeta, V1Pod, V1PodSpec, V1PodStatus, V1PodTemplateSpec)

from corral.backends.kubernetes import labels as L
from corral.backends.kubernetes.backend import WATCHED, KubernetesBackend
from corral.backends.kubernetes.settings import KubeSettings
from corral.backends.kubernetes.watch import ObjectCache

N = 1000


def main() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = client.Configuration()
    config.host = f"http://127.0.0.1:{port}"
    backend = KubernetesBackend(KubeSettings(), api_client=client.ApiClient(config))
    backend._caches = {kind: ObjectCache(kind) for kind in (*WATCHED, "Event")}
    template = V1PodTemplateSpec(spec=V1PodSpec(containers=[V1Container(name="main")]))
    running = V1ContainerState(running=V1ContainerStateRunning())
    for cid in range(1, N + 1):
        meta = {"namespace": "corral-p", "labels": L.labels("p", cid, cid, "training", "job")}
        backend._caches["Job"].apply("ADDED", V1Job(metadata=V1ObjectMeta(name=f"w{cid}-job", **meta),
                                                    spec=V1JobSpec(template=template)))
        backend._caches["Pod"].apply("ADDED", V1Pod(
            metadata=V1ObjectMeta(name=f"w{cid}-job-x", **meta), spec=V1PodSpec(containers=[V1Container(name="main")]),
            status=V1PodStatus(phase="Running", container_statuses=[V1ContainerStatus(
                name="main", image="x", image_id="", ready=True, restart_count=0, state=running)])))
    ids = set(range(1, N + 1))
    began = time.perf_counter()
    full = backend._collect(ids, everything=True)
    full_s = time.perf_counter() - began
    assert len(full) == N
    for cid in range(1, 11):
        backend._on_change(backend._caches["Pod"].of_component(cid))
    began = time.perf_counter()
    with backend._lock:
        dirty = set(backend._dirty)
        backend._dirty.clear()
    backend._collect(dirty, everything=False)
    ten_s = time.perf_counter() - began
    began = time.perf_counter()
    for _ in range(100):
        with backend._lock:
            dirty = set(backend._dirty)
            backend._dirty.clear()
        backend._collect(dirty, everything=False)
    idle_s = (time.perf_counter() - began) / 100
    print(f"components: {N} (a Job and its pod each)")
    print(f"full recomputation (agent start): {full_s * 1000:.1f} ms")
    print(f"observe after 10 changed:         {ten_s * 1000:.2f} ms")
    print(f"observe with nothing changed:     {idle_s * 1e6:.1f} us")
    backend.close()


if __name__ == "__main__":
    main()
