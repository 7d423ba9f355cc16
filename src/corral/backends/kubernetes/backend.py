"""The Kubernetes backend: components as Kubernetes objects, driven by the official client.

    backend = KubernetesBackend(KubeSettings(gpu_resource="amd.com/gpu"))
    launches = backend.build_launches(workload_id=7, project="vision", workload_type="inference", spec=spec, ...)
    backend.start(launches[0])     # creates the Secret, Deployment, ... (see render); returns at once
    backend.observe()              # statuses from the watches' caches, only what changed

State lives on the cluster: every object carries its component's id as a label, so a new
backend (an agent restart) finds its components by listing, and ``start`` of a component
whose objects exist creates nothing (409 AlreadyExists counts as done): no duplicates
after a crash or an API outage. Watches (``watch``) keep one cache per kind; ``observe``
recomputes only the components an event touched. ``stop`` deletes with foreground
propagation (a Job goes once its pods have) and the component is Deleted when the
watches saw its last object go, DeleteFailed if that takes past ``delete_timeout_s``.
With the API server unreachable or answering 5xx, every component keeps its last status
with a reason saying so, ``capacity`` raises ``BackendUnavailable`` (the cluster turns
unhealthy) and the watches list again once it answers.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from corral.backends.base import BackendError, BackendUnavailable, Capacity, Launch, Observation, Usage
from corral.backends.kubernetes import cluster
from corral.backends.kubernetes.discovery import Discovery
from corral.backends.kubernetes.logs import Output
from corral.backends.kubernetes.observe import Observing, _workload_of
from corral.backends.kubernetes import labels as L
from corral.backends.kubernetes.containers import service_port, unit_for
from corral.backends.kubernetes.render import JOBSET_CRD, PYTORCHJOB_CRD, component_objects, project_objects
from corral.backends.kubernetes.settings import KubeSettings
from corral.backends.kubernetes.states import PASSIVE_KINDS
from corral.backends.kubernetes.usage import PodMetrics
from corral.backends.kubernetes.watch import ObjectCache, Watcher, key_of, labels_of
from corral.backends.recipes import ComponentRef, RecipeError, time_limit_of
from corral.domain.statuses import ComponentStatus as S

# kind -> (API group object, list-for-all-namespaces method)
WATCHED = {
    "Pod": ("core", "list_pod_for_all_namespaces"),
    "Job": ("batch", "list_job_for_all_namespaces"),
    "Deployment": ("apps", "list_deployment_for_all_namespaces"),
    "StatefulSet": ("apps", "list_stateful_set_for_all_namespaces"),
    "Service": ("core", "list_service_for_all_namespaces"),
    "ConfigMap": ("core", "list_config_map_for_all_namespaces"),
    "Secret": ("core", "list_secret_for_all_namespaces"),
    "PersistentVolumeClaim": ("core", "list_persistent_volume_claim_for_all_namespaces"),
    "Ingress": ("networking", "list_ingress_for_all_namespaces"),
}
# (items of a list carry no apiVersion of their own)
API_VERSIONS = {"Pod": "v1", "Service": "v1", "ConfigMap": "v1", "Secret": "v1", "PersistentVolumeClaim": "v1",
                "Job": "batch/v1", "Deployment": "apps/v1", "StatefulSet": "apps/v1",
                "Ingress": "networking.k8s.io/v1"}
# Custom resources watched when their CRD is installed: kind -> (CRD name, group, version, plural)
CUSTOM = {
    "PyTorchJob": (PYTORCHJOB_CRD, "kubeflow.org", "v1", "pytorchjobs"),
    "JobSet": (JOBSET_CRD, "jobset.x-k8s.io", "v1alpha2", "jobsets"),
    "HTTPRoute": ("httproutes.gateway.networking.k8s.io", "gateway.networking.k8s.io", "v1", "httproutes"),
}
_DONE = (S.COMPLETED, S.FAILED, S.DELETED, S.DELETE_FAILED)


def _now() -> datetime:
    return datetime.now(UTC)


def unreachable(exc: BaseException) -> bool:
    """The API server is down or failing (not: it refused this request)."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        return exc.status is None or exc.status >= 500 or exc.status == 429
    return True


@dataclass
class _Record:
    workload_id: int
    native_name: str
    started: float = field(default_factory=time.monotonic)
    stop_deadline: float | None = None
    seen_objects: bool = False
    created: bool = False  # every object of the component was created (or found)
    expect_active: bool = False  # it has a Job, Deployment, ... (not only passive objects)
    failed: str | None = None  # the cluster refused one of its objects
    missing_hint: str | None = None  # Launch.missing_hint: said when its program is not in the image


class KubernetesBackend(Observing, Discovery, Output):
    """Runs components as Kubernetes objects. Thread-safe; see the module docstring."""

    kind = "kubernetes"

    def __init__(self, settings: KubeSettings | None = None, *, api_client: Any = None) -> None:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        self.settings = settings or KubeSettings()
        if api_client is None:
            try:
                if not self.settings.kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST"):
                    config.load_incluster_config()
                else:
                    config.load_kube_config(config_file=self.settings.kubeconfig, context=self.settings.context)
            except (ConfigException, OSError, TypeError) as exc:
                raise BackendError(f"cannot find the Kubernetes API server: {exc} (set KUBECONFIG, pass a "
                                   f"kubeconfig in the settings, or run the agent in a pod)") from exc
            api_client = client.ApiClient()
        self.api = api_client
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.networking = client.NetworkingV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self._lock = threading.RLock()
        self._caches: dict[str, ObjectCache] = {}
        self._watchers: list[Watcher] = []
        self._records: dict[int, _Record] = {}
        self._specs: dict[int, tuple[Mapping[str, Any], dict[str, str], int, str | None]] = {}
        self._last: dict[int, Observation] = {}
        self._dirty: set[int] = set()
        self._forgotten: set[int] = set()
        self._projects: set[str] = set()
        self._crds: frozenset[str] | None = None
        self._down: tuple[datetime, str] | None = None
        self._dyn: Any = None
        self._changed = threading.Event()  # set by the watches; wait_for_changes waits on it
        self._record_type = _Record
        self._metrics = PodMetrics(self.custom)

    # -- plumbing -----------------------------------------------------------------------

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            answer = fn(*args, **kwargs)
        except ApiException as exc:
            if unreachable(exc):
                self._mark_down(exc)
                raise BackendUnavailable(f"{what}: the Kubernetes API server answered {exc.status} "
                                         f"{exc.reason}") from exc
            raise
        except (HTTPError, OSError) as exc:  # urllib3/socket errors: cannot reach it at all
            self._mark_down(exc)
            raise BackendUnavailable(f"{what}: cannot reach the Kubernetes API server: {exc}") from exc
        return answer

    def _mark_down(self, exc: BaseException) -> None:
        with self._lock:
            if self._down is None:
                self._down = (_now(), str(getattr(exc, "reason", None) or exc)[:200])
                self._dirty.update(self._last)
                self._changed.set()

    def _mark_up(self) -> None:
        with self._lock:
            if self._down is not None:
                self._down = None
                self._dirty.update(self._last)
                self._changed.set()

    def _on_change(self, objects: list[Any]) -> None:
        with self._lock:
            for obj in objects:
                cid = L.component_of(labels_of(obj)) if getattr(obj, "involved_object", None) is None \
                    else self._component_named(obj.involved_object)
                if cid is not None:
                    self._dirty.add(cid)
                    self._changed.set()

    def _component_named(self, ref: Any) -> int | None:
        """The component of the object an event is about (a Job or JobSet of ours)."""
        cache = self._caches.get(ref.kind or "")
        found = cache.get((ref.namespace or "", ref.name or "")) if cache is not None else None
        return L.component_of(labels_of(found)) if found is not None else None

    def _ensure_watching(self) -> None:
        with self._lock:
            if self._watchers:
                return
            kinds = {kind: getattr(getattr(self, api), method) for kind, (api, method) in WATCHED.items()}
            extra: dict[str, dict[str, Any]] = {}
            try:
                crds = self.crds()
            except BackendUnavailable:
                crds = frozenset()  # the API server is down: its own kinds are watched (and re-listed) anyway
            for kind, (crd, group, version, plural) in CUSTOM.items():
                if crd in crds:
                    kinds[kind] = self.custom.list_cluster_custom_object
                    extra[kind] = {"group": group, "version": version, "plural": plural}
            # Pods a quota or admission refused to a Job: only an event says so (no labels of ours).
            kinds["Event"] = self.core.list_event_for_all_namespaces
            extra["Event"] = {"field_selector": "reason=FailedCreate"}
            for kind, list_fn in kinds.items():
                cache = self._caches[kind] = ObjectCache(kind)
                watcher = Watcher(cache, list_fn, on_change=self._on_change, on_error=self._mark_down,
                                  on_ok=self._mark_up, label_selector=None if kind == "Event" else L.CORRAL_SELECTOR,
                                  **extra.get(kind, {}))
                self._watchers.append(watcher)
                watcher.start()
        deadline = time.monotonic() + 10  # the first lists, unless the API server is down
        while self._down is None and time.monotonic() < deadline \
                and not all(w.cache.synced.is_set() for w in self._watchers):
            time.sleep(0.05)

    def crds(self) -> frozenset[str]:
        """The operators' CRDs this cluster has (multi-node jobs prefer them)."""
        if self._crds is None:
            from kubernetes import client
            from kubernetes.client.exceptions import ApiException

            found = set()
            ext = client.ApiextensionsV1Api(self.api)
            for crd, *_ in CUSTOM.values():
                try:
                    self._call("reading CRDs", ext.read_custom_resource_definition, crd)
                    found.add(crd)
                except ApiException:
                    pass  # 404: not installed; 403: the agent may not look (treat as absent)
            self._crds = frozenset(found)
        return self._crds

    def _dynamic(self) -> Any:
        if self._dyn is None:
            from kubernetes.dynamic import DynamicClient

            self._dyn = self._call("discovering the API", DynamicClient, self.api)
        return self._dyn

    def _create(self, obj: Mapping[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            resource = self._call("discovering the API", self._dynamic().resources.get,
                                  api_version=obj["apiVersion"], kind=obj["kind"])
        except ResourceNotFoundError as exc:
            raise BackendError(f"this cluster has no {obj['kind']} ({obj['apiVersion']}): is its CRD "
                               f"installed?") from exc
        try:
            self._call(f"creating {obj['kind']}", resource.create, body=dict(obj),
                       namespace=obj["metadata"].get("namespace"))
        except ApiException as exc:
            if exc.status != 409:  # AlreadyExists: made by an earlier try (idempotent names)
                raise BackendError(f"the cluster refused {obj['kind']} {obj['metadata']['name']}: "
                                   f"{_api_message(exc)}") from exc

    # -- the contract -------------------------------------------------------------------

    def build_launches(self, *, workload_id: int, project: str, workload_type: str, spec: Mapping[str, Any],
                       components: Sequence[ComponentRef], secret_env: Mapping[str, str] | None = None,
                       submitter: str | None = None, **_: Any) -> list[Launch]:
        """The agent's ``recipes.build_launches`` for this cluster: the spec itself is kept
        for ``start`` (images, ports and secrets are Kubernetes matters), the ``Launch`` says
        which component and what it holds."""
        kind = str(getattr(workload_type, "value", workload_type))
        launches = []
        for ref in components:
            role = ref.kind if ref.kind in ("job", "server", "endpoint") else "job"
            launch = Launch(ref.id, workload_id, project, kind, f"{project}-w{workload_id}-{role}", kind=role,
                            command=None if role == "endpoint" else ("(see the rendered objects)",), gpu=ref.gpu,
                            cpu_millicores=ref.cpu_millicores, memory_bytes=ref.memory_bytes,
                            time_limit_s=None if role == "endpoint" else time_limit_of(spec),
                            nodes=int(spec.get("nodes") or 1) if role == "job" else 1)
            unit_for(launch, self.settings, spec, secret_env)  # a spec that cannot run fails here
            with self._lock:
                self._specs[ref.id] = (dict(spec), dict(secret_env or {}), int(spec.get("nodes") or 1), submitter)
            launches.append(launch)
        return launches

    def objects_for(self, launch: Launch) -> list[dict[str, Any]]:
        spec, secret_env, nodes, submitter = self._specs.get(launch.component_id, (None, dict(launch.env), 1, None))
        unit = unit_for(launch, self.settings, spec, secret_env, nodes=nodes, submitter=submitter)
        return component_objects(unit, self.settings, self.crds(),
                                 port=service_port(launch.workload_type, spec) if launch.kind == "endpoint" else None)

    def start(self, launch: Launch) -> None:
        self._ensure_watching()
        with self._lock:
            record = self._records.get(launch.component_id)
            if record is not None and (record.created or record.stop_deadline is not None):
                return  # idempotent: made already (or being removed)
        try:
            objects = self.objects_for(launch)
        except RecipeError as exc:
            raise BackendError(str(exc)) from exc
        if launch.project not in self._projects:
            for obj in project_objects(launch.project, self.settings):
                self._create(obj)
            self._projects.add(launch.project)
        with self._lock:
            record = self._records.setdefault(launch.component_id, _Record(launch.workload_id, launch.native_name))
            self._dirty.add(launch.component_id)
        record.expect_active = any(obj["kind"] not in PASSIVE_KINDS for obj in objects)
        record.missing_hint = launch.missing_hint
        try:
            for obj in objects:  # all of them, every try: what exists answers 409 (after a crash or an outage)
                self._create(obj)
        except BackendError as exc:
            record.failed = f"could not start: {exc}"
            raise
        record.created = True

    def stop(self, component_id: int, grace_s: float = 30.0) -> None:
        from kubernetes.client.exceptions import ApiException

        self._ensure_watching()
        found = self._objects_of(component_id)
        with self._lock:
            record = self._records.setdefault(component_id, _Record(_workload_of(found), f"c{component_id}"))
            if record.stop_deadline is None:
                record.stop_deadline = time.monotonic() + self.settings.delete_timeout_s
            self._dirty.add(component_id)
        for kind, obj in found:
            api_version = obj["apiVersion"] if isinstance(obj, dict) else (obj.api_version or API_VERSIONS[kind])
            ns, name = (obj["metadata"]["namespace"], obj["metadata"]["name"]) if isinstance(obj, dict) \
                else (obj.metadata.namespace, obj.metadata.name)
            if kind == "Pod" and any(k != "Pod" for k, _ in found):
                continue  # its controller's deletion takes it
            resource = self._call("discovering the API", self._dynamic().resources.get, api_version=api_version,
                                  kind=kind)
            try:
                self._call(f"deleting {kind} {name}", resource.delete, name=name, namespace=ns,
                           propagation_policy="Foreground", grace_period_seconds=int(grace_s))
            except ApiException as exc:
                if exc.status != 404:
                    raise BackendError(f"cannot delete {kind} {name}: {_api_message(exc)}") from exc

    def capacity(self) -> Capacity:
        nodes = self._call("listing nodes", self.core.list_node)
        self._mark_up()
        return Capacity(cluster.nodes_capacity(nodes.items, self.settings.gpu_resource),
                        isolation="each project is a Kubernetes namespace of its own; its workloads run under a "
                                  "service account granted no rights, and its secrets are Secrets of that "
                                  "namespace only")

    def usage(self) -> list[Usage]:
        """What each running component's pods use now, from the metrics API (see ``usage``):
        CPU and memory; [] where the cluster has no metrics API (said once in the log)."""
        self._ensure_watching()
        pods = self._caches.get("Pod")
        components = {key_of(pod): cid for pod in (pods.items() if pods is not None else ())
                      if (cid := L.component_of(labels_of(pod))) is not None}
        with self._lock:
            forgotten = set(self._forgotten)
        return self._metrics.sample(components, forgotten)

    def forget(self, component_id: int) -> None:
        with self._lock:
            last = self._last.get(component_id)
            if last is not None and last.status not in _DONE:
                raise BackendError(f"component {component_id} has not finished ({last.status.value})")
            self._records.pop(component_id, None)
            self._specs.pop(component_id, None)
            self._last.pop(component_id, None)
            self._forgotten.add(component_id)

    def close(self) -> None:
        for watcher in self._watchers:
            watcher.stop()
        self._watchers = []
        self.stop_discovering()
        self.api.close()


def _api_message(exc: Any) -> str:
    import json

    try:
        return str(json.loads(exc.body).get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return f"{exc.status} {exc.reason}"
