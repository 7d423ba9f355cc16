"""Discovery: workloads on the cluster that Corral did not create (a mixin of the backend).

Objects carrying a project's label (``corral.dev/project``) anywhere, and every workload
object in a project's namespace (a namespace labelled with its project), that are not
Corral's (no component label) are reported as ``Discovered``, with everything their pods
ask for (they count against the project's quota), and annotated
``corral.dev/created-by: discovered`` on the cluster.

All from watches, as statuses are: one per workload kind cluster-wide for objects with a
project label, one for project namespaces, and, per project namespace, one per workload
kind (objects there need no label). ``discover`` then reads caches and calls the API only
to annotate what it finds for the first time.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from corral.backends.base import BackendUnavailable, Discovered
from corral.backends.kubernetes import cluster
from corral.backends.kubernetes import labels as L
from corral.backends.kubernetes.watch import ObjectCache, Watcher

_API = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "Job": "batch/v1", "Pod": "v1"}
LABELLED = f"{L.PROJECT},{L.MANAGED_BY}!=corral"  # a project's label, not made by Corral


class Discovery:
    core: Any
    apps: Any
    batch: Any
    settings: Any
    _call: Any
    _dynamic: Any
    _mark_down: Any
    _mark_up: Any
    _down: Any

    def _listers(self) -> dict[str, tuple[Any, Any]]:
        return {"Deployment": (self.apps.list_deployment_for_all_namespaces, self.apps.list_namespaced_deployment),
                "StatefulSet": (self.apps.list_stateful_set_for_all_namespaces,
                                self.apps.list_namespaced_stateful_set),
                "Job": (self.batch.list_job_for_all_namespaces, self.batch.list_namespaced_job),
                "Pod": (self.core.list_pod_for_all_namespaces, self.core.list_namespaced_pod)}

    def _watch(self, cache: ObjectCache, list_fn: Any, **kwargs: Any) -> Watcher:
        watcher = Watcher(cache, list_fn, on_change=lambda objects: None, on_error=self._mark_down,
                          on_ok=self._mark_up, **kwargs)
        watcher.start()
        return watcher

    def _ensure_discovering(self) -> None:
        if getattr(self, "_found", None) is not None:
            return
        self._found_lock = threading.Lock()
        self._found: dict[str, tuple[ObjectCache, Watcher]] = {}  # cache name -> (cache, its watcher)
        for kind, (everywhere, _) in self._listers().items():
            cache = ObjectCache(kind)
            self._found[f"labelled/{kind}"] = (cache, self._watch(cache, everywhere, label_selector=LABELLED))
        namespaces = ObjectCache("Namespace")
        self._found["namespaces"] = (namespaces, self._watch(namespaces, self.core.list_namespace,
                                                             label_selector=L.PROJECT))
        self._wait_synced()

    def _project_namespaces(self) -> dict[str, str]:
        """Namespace -> project; starts (and stops) the watches inside each namespace."""
        namespaces = self._found["namespaces"][0]
        owner = {ns.metadata.name: ns.metadata.labels[L.PROJECT] for ns in namespaces.items()
                 if (ns.metadata.labels or {}).get(L.PROJECT)}
        with self._found_lock:
            for kind, (_, within) in self._listers().items():
                for ns in owner:
                    name = f"in/{ns}/{kind}"
                    if name not in self._found:
                        cache = ObjectCache(kind)
                        self._found[name] = (cache, self._watch(cache, within, namespace=ns))
            for name in [n for n in self._found if n.startswith("in/") and n.split("/")[1] not in owner]:
                self._found.pop(name)[1].stop()  # the namespace is gone
        self._wait_synced()
        return owner

    def _wait_synced(self) -> None:
        """For the first lists (10 s at most; not at all while the API server is down)."""
        deadline = time.monotonic() + 10
        while self._down is None and time.monotonic() < deadline \
                and not all(c.synced.is_set() for c, _ in list(self._found.values())):
            time.sleep(0.05)

    def stop_discovering(self) -> None:
        for _, watcher in (getattr(self, "_found", None) or {}).values():
            watcher.stop()
        self._found = None  # type: ignore[assignment]

    def discover(self) -> list[Discovered]:
        """Workloads Corral did not create, carrying a project's label or in a project's
        namespace, with everything their pods ask for (they count against quota)."""
        self._ensure_discovering()
        owner = self._project_namespaces()
        found: dict[tuple[str, str, str], Discovered] = {}
        for name, (cache, _) in list(self._found.items()):
            kind = cache.kind
            if kind == "Namespace":
                continue
            for obj in cache.items():
                if L.component_of(obj.metadata.labels) is not None or not cluster.is_top_level(kind, obj) \
                        or not cluster.is_running(kind, obj):
                    continue
                project = (obj.metadata.labels or {}).get(L.PROJECT) or owner.get(obj.metadata.namespace)
                found[(kind, obj.metadata.namespace, obj.metadata.name)] = cluster.discovered(
                    kind, obj, project, self.settings.gpu_resource)
                if (obj.metadata.annotations or {}).get(L.CREATED_BY) != L.CREATED_BY_DISCOVERED:
                    self._annotate(kind, obj)
        return list(found.values())

    def _annotate(self, kind: str, obj: Any) -> None:
        """Say so on the object too (product.md: created by Corral, or discovered)."""
        from kubernetes.client.exceptions import ApiException

        try:
            resource = self._dynamic().resources.get(api_version=obj.api_version or _API[kind], kind=kind)
            self._call(f"annotating {kind} {obj.metadata.name}", resource.patch, name=obj.metadata.name,
                       namespace=obj.metadata.namespace, content_type="application/merge-patch+json",
                       body={"metadata": {"annotations": {L.CREATED_BY: L.CREATED_BY_DISCOVERED}}})
        except (ApiException, BackendUnavailable):
            pass  # a label is a courtesy; the report to the control plane is what counts
