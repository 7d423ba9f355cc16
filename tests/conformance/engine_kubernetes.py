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
