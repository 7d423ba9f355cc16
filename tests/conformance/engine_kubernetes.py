"""The Kubernetes backend against a live cluster (``KUBECONFIG``: kind, k3s or a real one).

Each test gets namespaces of its own (prefix ``corral-t<random>-``), deleted after it;
the outsider is a Deployment applied as a user would with kubectl, in the project's
namespace. Skipped here with ``LIVE_KUBERNETES_SKIP``: no API server can run on these
machines, and no stand-in counts as one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from corral.backends.base import Backend
from tests.conformance.engines import Engine, Outsider
from tests.conftest import LIVE_KUBERNETES_SKIP


class KubernetesEngine(Engine):
    name = "kubernetes"
    timeout = 180.0  # image pulls on a fresh cluster
    python = "python3"  # in the runtime image (python:3.12-slim)
    bind_host = "0.0.0.0"  # the readiness probe connects to the pod's address, not its loopback
    time_limit_s = 5  # activeDeadlineSeconds: counted in seconds from the Job's start

    def __init__(self, request, tmp_path) -> None:  # type: ignore[no-untyped-def]
        super().__init__(request, tmp_path)
        from corral.backends.kubernetes import KubeSettings

        self.prefix = f"corral-t{uuid.uuid4().hex[:6]}-"
        self.settings = KubeSettings(kubeconfig=os.environ["KUBECONFIG"], namespace_prefix=self.prefix,
                                     models_access_mode="ReadWriteOnce", models_size="1Gi", delete_timeout_s=120)
        self.made: list[Backend] = []

    @classmethod
    def unavailable(cls) -> str | None:
        return None if os.environ.get("KUBECONFIG") else LIVE_KUBERNETES_SKIP

    def backend(self) -> Backend:
        from corral.backends.kubernetes import KubernetesBackend

        backend = KubernetesBackend(self.settings)
        self.made.append(backend)
        return backend

    def _core(self):  # type: ignore[no-untyped-def]
        from kubernetes import client, config

        return client.CoreV1Api(config.new_client_from_config(config_file=os.environ["KUBECONFIG"]))

    def die_by_signal(self, signal_number: int) -> str:
        # The command's shell is the container's PID 1, which the kernel guards from every
        # signal it has no handler for, SIGKILL from inside the container included: a
        # child dies instead, and PID 1 exits as it did (128 + the signal, read back as -N).
        return f"sh -c 'kill -{signal_number} $$'; exit $?"

    def http_get(self, backend: Backend, component_id: int, url: str) -> int:
        """Cluster DNS names (``w101.<namespace>.svc.cluster.local``) do not resolve on the
        test host: the GET goes through the API server's proxy to the component's pod."""
        from urllib.parse import urlsplit

        from kubernetes.client.exceptions import ApiException

        from corral.backends.kubernetes import labels as L

        parts = urlsplit(url)
        namespace = (parts.hostname or "").split(".")[1]
        core = self._core()
        pods = core.list_namespaced_pod(namespace, label_selector=f"{L.COMPONENT}={component_id}").items
        ready = [p for p in pods if p.status.phase == "Running"]
        assert ready, f"no running pod of component {component_id} in {namespace}"
        try:
            core.connect_get_namespaced_pod_proxy_with_path(f"{ready[0].metadata.name}:{parts.port}", namespace,
                                                            (parts.path or "/").lstrip("/"))
        except ApiException as exc:
            return int(exc.status or 0)
        return 200

    @contextmanager
    def outsider(self) -> Iterator[Outsider]:
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
        namespace = f"{self.prefix}proj"
        name = f"theirs-{uuid.uuid4().hex[:6]}"
        body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                                             "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}}}]}}}}
        client.AppsV1Api(api).create_namespaced_deployment(namespace, body)
        try:
            yield Outsider(f"{namespace}/deployment/{name}", "deployment", "proj")
        finally:
            client.AppsV1Api(api).delete_namespaced_deployment(name, namespace)

    def cleanup(self) -> None:
        for backend in self.made:
            backend.close()
        core = self._core()
        for namespace in core.list_namespace().items:
            if namespace.metadata.name.startswith(self.prefix):
                core.delete_namespace(namespace.metadata.name)
