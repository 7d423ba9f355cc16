"""Discovery: workloads on the cluster that Corral did not create (a mixin of the backend).

Objects carrying a project's label (``corral.dev/project``) anywhere, and every workload
object in a project's namespace (a namespace labelled with its project), that are not
Corral's (no component label) are reported as ``Discovered``, with everything their pods
ask for (they count against the project's quota), and annotated
``corral.dev/created-by: discovered`` on the cluster.
"""

from __future__ import annotations

from typing import Any

from corral.backends.base import BackendUnavailable, Discovered
from corral.backends.kubernetes import cluster
from corral.backends.kubernetes import labels as L

_API = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "Job": "batch/v1", "Pod": "v1"}


class Discovery:
    core: Any
    apps: Any
    batch: Any
    settings: Any
    _call: Any
    _dynamic: Any

    def discover(self) -> list[Discovered]:
        """Workloads Corral did not create, carrying a project's label or in a project's
        namespace, with everything their pods ask for (they count against quota)."""
        from kubernetes.client.exceptions import ApiException

        namespaces = self._call("listing namespaces", self.core.list_namespace, label_selector=L.PROJECT).items
        owner = {ns.metadata.name: ns.metadata.labels[L.PROJECT] for ns in namespaces}
        listers = {"Deployment": (self.apps.list_deployment_for_all_namespaces, self.apps.list_namespaced_deployment),
                   "StatefulSet": (self.apps.list_stateful_set_for_all_namespaces,
                                   self.apps.list_namespaced_stateful_set),
                   "Job": (self.batch.list_job_for_all_namespaces, self.batch.list_namespaced_job),
                   "Pod": (self.core.list_pod_for_all_namespaces, self.core.list_namespaced_pod)}
        found: dict[tuple[str, str, str], Discovered] = {}
        for kind, (everywhere, within) in listers.items():
            batches = [self._call(f"listing {kind}s", everywhere, label_selector=L.PROJECT).items]
            for ns in owner:
                batches.append(self._call(f"listing {kind}s", within, ns).items)
            for obj in (o for batch in batches for o in batch):
                if L.component_of(obj.metadata.labels) is not None or not cluster.is_top_level(kind, obj) \
                        or not cluster.is_running(kind, obj):
                    continue
                project = (obj.metadata.labels or {}).get(L.PROJECT) or owner.get(obj.metadata.namespace)
                item = cluster.discovered(kind, obj, project, self.settings.gpu_resource)
                found[(kind, obj.metadata.namespace, obj.metadata.name)] = item
                if (obj.metadata.annotations or {}).get(L.CREATED_BY) != L.CREATED_BY_DISCOVERED:
                    try:  # say so on the object too (product.md: created by Corral or discovered)
                        self._dynamic().resources.get(api_version=obj.api_version or _API[kind], kind=kind).patch(
                            name=obj.metadata.name, namespace=obj.metadata.namespace, content_type=
                            "application/merge-patch+json", body={"metadata": {"annotations": {
                                L.CREATED_BY: L.CREATED_BY_DISCOVERED}}})
                    except (ApiException, BackendUnavailable):
                        pass
        return list(found.values())

