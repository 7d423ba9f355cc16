"""Kubernetes objects for a component (``Unit``) and for a project, as plain dicts.

    objects = component_objects(unit, settings, crds=frozenset({"pytorchjobs.kubeflow.org"}))
    print(to_yaml(project_objects("vision", settings) + objects))   # kubectl apply -f -

- a batch component is a ``batch/v1`` Job (``backoffLimit: 0``: a failure is Failed, Corral
  does not retry behind the user's back; the workload's time limit is its
  ``activeDeadlineSeconds``, ``runPolicy.activeDeadlineSeconds`` of a PyTorchJob, each
  replicated Job's of a JobSet); multi-node (``nodes`` > 1) is a PyTorchJob when
  the Kubeflow training operator's CRD is installed, else a JobSet when its CRD is, else
  an Indexed Job with a headless Service for the pods' names (``MASTER_ADDR``,
  ``NODE_RANK``, ``WORLD_SIZE`` set for ``torchrun``);
- a server is a Deployment (``Recreate`` when it holds GPUs: a rollout never needs twice
  the GPUs), its endpoint a Service, plus, on an apps domain, an Ingress or HTTPRoute
  sending ``w<id>.<apps domain>`` to Corral's proxy (which signs the viewer in);
- secrets go in a Secret of the project's namespace, read by the pod through ``envFrom``;
- every pod runs as the project's service account with its token not mounted, mounts the
  project's model store (PVC ``corral-models``) at ``/models``, holds GPUs as the
  configured extended resource and CPU/memory as requests equal to limits.

Names are fixed by the workload and the component's role (``w7-job``, ``w7-server``, the
Service ``w7``), so creating the same component twice finds the first one (idempotent).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from corral.backends.identity import kube_identity
from corral.backends.kubernetes import labels as L
from corral.backends.kubernetes.containers import MODELS_MOUNT, Unit
from corral.backends.kubernetes.results import ENV_RESULT_FILE, RESULT_FILE
from corral.backends.kubernetes.settings import KubeSettings
from corral.backends.recipes import RecipeError
from corral.domain.resources import format_millicores

MODELS_PVC = "corral-models"
ENDPOINT_URL = L.PREFIX + "endpoint-url"
RESULT_MODEL = L.PREFIX + "result-model"
KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"
RDZV_PORT = 29500
PYTORCHJOB_CRD = "pytorchjobs.kubeflow.org"
JOBSET_CRD = "jobsets.jobset.x-k8s.io"
# Kinds a Custom manifest may not create: cluster-wide objects, and rights (a project's
# objects live in its namespace and its service account is granted nothing).
REFUSED_KINDS = frozenset({
    "Namespace", "Node", "PersistentVolume", "StorageClass", "PriorityClass", "RuntimeClass",
    "CustomResourceDefinition", "APIService", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
    "ServiceAccount", "ResourceQuota", "LimitRange", "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
})


def namespace(project: str, settings: KubeSettings) -> str:
    return kube_identity(project, settings.namespace_prefix).namespace


def object_name(unit: Unit) -> str:
    """The main object's name: ``w<id>-job``, ``w<id>-server``, or ``w<id>`` (the Service)."""
    return f"w{unit.workload_id}" if unit.role == "endpoint" else f"w{unit.workload_id}-{unit.role}"


def host_for(workload_id: int, settings: KubeSettings) -> str | None:
    return f"w{workload_id}.{settings.apps_domain}" if settings.apps_domain else None


def project_objects(project: str, settings: KubeSettings) -> list[dict[str, Any]]:
    """The project's namespace (Pod Security ``baseline``: no privileged or host-path
    pods), its service account (no rights: no binding names it) and its model store."""
    ident = kube_identity(project, settings.namespace_prefix)
    meta_labels = {L.PROJECT: project, L.MANAGED_BY: "corral"}
    pvc_spec: dict[str, Any] = {"accessModes": [settings.models_access_mode],
                                "resources": {"requests": {"storage": settings.models_size}}}
    if settings.models_storage_class:
        pvc_spec["storageClassName"] = settings.models_storage_class
    return [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": ident.namespace, "labels": {**meta_labels,
                                                           "pod-security.kubernetes.io/enforce": "baseline"}}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "automountServiceAccountToken": False,
         "metadata": {"name": ident.service_account, "namespace": ident.namespace, "labels": meta_labels}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": MODELS_PVC, "namespace": ident.namespace, "labels": meta_labels},
         "spec": pvc_spec},
    ]


def component_objects(unit: Unit, settings: KubeSettings, crds: Iterable[str] = (),
                      port: int | None = None) -> list[dict[str, Any]]:
    """Everything one component is on the cluster, the Secret first. ``port``: for an
    endpoint, the port its server listens on."""
    if unit.manifest:
        return _manifest_objects(unit, settings)
    if unit.role == "endpoint":
        return _endpoint_objects(unit, settings, port)
    objects: list[dict[str, Any]] = []
    if unit.secret_env:
        objects.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                        "metadata": _meta(unit, settings, f"{object_name(unit)}-env"),
                        "stringData": {k: str(v) for k, v in sorted(unit.secret_env.items())}})
    if unit.role == "server":
        objects.append(_deployment(unit, settings))
    elif unit.nodes > 1:
        objects += _multi_node(unit, settings, frozenset(crds))
    else:
        objects.append(_job(unit, settings, _pod_template(unit, settings)))
    if settings.queue_name:  # Kueue admits what its queue-name label names (pods of a Deployment included)
        for obj in objects:
            if obj["kind"] in ("Job", "JobSet", "PyTorchJob", "Deployment"):
                obj["metadata"]["labels"][KUEUE_QUEUE] = settings.queue_name
                if obj["kind"] == "Deployment":
                    obj["spec"]["template"]["metadata"]["labels"][KUEUE_QUEUE] = settings.queue_name
    return objects


def _meta(unit: Unit, settings: KubeSettings, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace(unit.project, settings),
            "labels": L.labels(unit.project, unit.workload_id, unit.component_id, unit.workload_type, unit.role),
            "annotations": L.annotations(unit.submitter)}


def _quantities(unit: Unit, settings: KubeSettings) -> dict[str, Any]:
    amounts: dict[str, str] = {}
    if unit.cpu_millicores:
        amounts["cpu"] = format_millicores(unit.cpu_millicores)
    if unit.memory_bytes:
        amounts["memory"] = bytes_quantity(unit.memory_bytes)
    if unit.gpu:
        amounts[settings.gpu_resource] = str(unit.gpu)
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}


def bytes_quantity(count: int) -> str:
    for suffix, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if count % size == 0:
            return f"{count // size}{suffix}"
    return str(count)


def _container(unit: Unit, settings: KubeSettings, extra_env: list[dict[str, Any]], name: str) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": unit.image,
                                 "env": [{"name": k, "value": v} for k, v in sorted(unit.env.items())] + extra_env,
                                 "volumeMounts": [{"name": "models", "mountPath": MODELS_MOUNT,
                                                   "readOnly": unit.models_read_only}]}
    if unit.command is not None:
        container["command"] = list(unit.command)
    if unit.args is not None:
        container["args"] = list(unit.args)
    if unit.secret_env:
        container["envFrom"] = [{"secretRef": {"name": f"{object_name(unit)}-env"}}]
    resources = _quantities(unit, settings)
    if resources:
        container["resources"] = resources
    # A job's result comes back in its termination message (see results.py): its result
    # file (an evaluation's metrics file) is the message's path. Without a file written, a
    # failed container's message is the tail of its output.
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    if unit.role == "job":
        container["terminationMessagePath"] = RESULT_FILE
        if not unit.metrics:  # an evaluation's env already names it CORRAL_METRICS_FILE
            container["env"] = [e for e in container["env"] if e["name"] != ENV_RESULT_FILE] + \
                [{"name": ENV_RESULT_FILE, "value": RESULT_FILE}]
    if unit.port:
        container["ports"] = [{"name": "http", "containerPort": unit.port, "protocol": "TCP"}]
        probe: dict[str, Any] = ({"httpGet": {"path": unit.readiness_path, "port": "http"}}
                                 if unit.readiness_path else {"tcpSocket": {"port": "http"}})
        container["readinessProbe"] = probe | {"periodSeconds": 5, "failureThreshold": 3}
    if unit.workdir_subpath:
        container["volumeMounts"].append({"name": "models", "mountPath": "/work", "subPath": unit.workdir_subpath})
        container["workingDir"] = "/work"
    if unit.gpu:
        container["volumeMounts"].append({"name": "shm", "mountPath": "/dev/shm"})
    return container


def _pod_template(unit: Unit, settings: KubeSettings, extra_env: list[dict[str, Any]] | None = None,
                  restart: str = "Never", container_name: str = "main",
                  subdomain: str | None = None) -> dict[str, Any]:
    ident = kube_identity(unit.project, settings.namespace_prefix)
    spec: dict[str, Any] = {
        "serviceAccountName": ident.service_account, "automountServiceAccountToken": False,
        "enableServiceLinks": False, "restartPolicy": restart,
        "containers": [_container(unit, settings, extra_env or [], container_name)],
        "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": MODELS_PVC}}],
    }
    if unit.gpu:
        spec["volumes"].append({"name": "shm", "emptyDir": {"medium": "Memory"}})
    if settings.node_selector:
        spec["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        spec["tolerations"] = [dict(t) for t in settings.tolerations]
    if settings.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]
    if subdomain:
        spec["subdomain"] = subdomain
    if unit.priority and unit.priority in settings.priority_classes:
        spec["priorityClassName"] = settings.priority_classes[unit.priority]
    meta = _meta(unit, settings, "")
    return {"metadata": {"labels": meta["labels"], "annotations": meta["annotations"]}, "spec": spec}


def _job(unit: Unit, settings: KubeSettings, template: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": _result_meta(unit, settings),
            "spec": {"backoffLimit": 0, **_deadline(unit), **spec, "template": template}}


def _deadline(unit: Unit) -> dict[str, Any]:
    """The workload's time limit: the Job ends its pods past it (DeadlineExceeded: Failed)."""
    return {"activeDeadlineSeconds": int(unit.time_limit_s)} if unit.time_limit_s else {}


def _result_meta(unit: Unit, settings: KubeSettings) -> dict[str, Any]:
    meta = _meta(unit, settings, object_name(unit))
    if unit.result_model:  # what a finished job leaves in the model store
        meta["annotations"][RESULT_MODEL] = unit.result_model
    return meta


def _deployment(unit: Unit, settings: KubeSettings) -> dict[str, Any]:
    template = _pod_template(unit, settings, restart="Always")
    meta = _meta(unit, settings, object_name(unit))
    if unit.port:  # the endpoint's Service is w<id> (see _endpoint_objects); read back after a restart
        meta["annotations"][ENDPOINT_URL] = (f"http://w{unit.workload_id}.{meta['namespace']}.svc.cluster.local:"
                                             f"{unit.port}{unit.endpoint_path}")
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"replicas": unit.replicas,
                     "selector": {"matchLabels": {L.COMPONENT: str(unit.component_id), L.MANAGED_BY: "corral"}},
                     "strategy": {"type": "Recreate" if unit.gpu else "RollingUpdate"},
                     "template": template}}


def _rank_env(master: str, nodes: int) -> list[dict[str, Any]]:
    index = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    return [{"name": "MASTER_ADDR", "value": master}, {"name": "MASTER_PORT", "value": str(RDZV_PORT)},
            {"name": "WORLD_SIZE", "value": str(nodes)}, {"name": "NNODES", "value": str(nodes)},
            {"name": "NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": index}}}]


def _multi_node(unit: Unit, settings: KubeSettings, crds: frozenset[str]) -> list[dict[str, Any]]:
    name, n = object_name(unit), unit.nodes
    meta = _result_meta(unit, settings)
    if settings.prefer_crds and PYTORCHJOB_CRD in crds:
        template = _pod_template(unit, settings, container_name="pytorch")  # the operator's container name
        replica = {"restartPolicy": "Never", "template": template}
        return [{"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": meta,
                 "spec": {"runPolicy": {"backoffLimit": 0, "cleanPodPolicy": "None", **_deadline(unit)},
                          "pytorchReplicaSpecs": {"Master": {"replicas": 1, **replica},
                                                  "Worker": {"replicas": n - 1, **copy.deepcopy(replica)}}}}]
    if settings.prefer_crds and JOBSET_CRD in crds:
        template = _pod_template(unit, settings, _rank_env(f"{name}-node-0-0.{name}", n))
        return [{"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": meta,
                 "spec": {"network": {"enableDNSHostnames": True}, "failurePolicy": {"maxRestarts": 0},
                          "replicatedJobs": [{"name": "node", "replicas": 1, "template": {"spec": {
                              "completionMode": "Indexed", "completions": n, "parallelism": n, "backoffLimit": 0,
                              **_deadline(unit), "template": template}}}]}}]
    headless = f"{name}-nodes"
    template = _pod_template(unit, settings, _rank_env(f"{name}-0.{headless}", n), subdomain=headless)
    service = {"apiVersion": "v1", "kind": "Service", "metadata": _meta(unit, settings, headless),
               "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                        "selector": {L.COMPONENT: str(unit.component_id), L.MANAGED_BY: "corral"},
                        "ports": [{"name": "rdzv", "port": RDZV_PORT, "targetPort": RDZV_PORT}]}}
    job = _job(unit, settings, template, completionMode="Indexed", completions=n, parallelism=n)
    return [service, job]


def _endpoint_objects(unit: Unit, settings: KubeSettings, port: int | None) -> list[dict[str, Any]]:
    name = object_name(unit)
    port = port or 8000
    objects: list[dict[str, Any]] = [{
        "apiVersion": "v1", "kind": "Service", "metadata": _meta(unit, settings, name),
        "spec": {"type": "ClusterIP", "selector": {L.WORKLOAD: str(unit.workload_id), L.ROLE: "server",
                                                   L.MANAGED_BY: "corral"},
                 "ports": [{"name": "http", "port": port, "targetPort": port, "protocol": "TCP"}]}}]
    host = host_for(unit.workload_id, settings)
    # The route lives beside Corral's own Service (its proxy, which signs the viewer in and
    # forwards to the workload), never pointing at the workload: routes reach Services of
    # their own namespace without a ReferenceGrant or an ExternalName.
    route = _meta(unit, settings, f"{settings.namespace_prefix}w{unit.workload_id}")
    route["namespace"] = settings.proxy_namespace
    if settings.routes == "ingress":
        objects.append({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": route,
                        "spec": {"ingressClassName": settings.ingress_class, "rules": [{"host": host, "http": {
                            "paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {
                                "name": settings.proxy_service, "port": {"number": settings.proxy_port}}}}]}}]}})
    elif settings.routes == "httproute":
        gw_namespace, gw_name = (settings.gateway or "/").split("/")
        objects.append({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": route,
                        "spec": {"parentRefs": [{"name": gw_name, "namespace": gw_namespace}], "hostnames": [host],
                                 "rules": [{"backendRefs": [{"name": settings.proxy_service,
                                                             "port": settings.proxy_port}]}]}})
    return objects


def _manifest_objects(unit: Unit, settings: KubeSettings) -> list[dict[str, Any]]:
    """A Custom workload's own objects, in the project's namespace, with Corral's labels."""
    ns = namespace(unit.project, settings)
    out = []
    for index, item in enumerate(unit.manifest):
        obj = copy.deepcopy(dict(item))
        kind, api = obj.get("kind"), obj.get("apiVersion")
        if not isinstance(kind, str) or not isinstance(api, str):
            raise RecipeError(f"manifest object {index + 1}: needs apiVersion and kind")
        if kind in REFUSED_KINDS:
            raise RecipeError(f"manifest object {index + 1}: kind {kind} is not allowed: a project's objects live "
                              f"in its namespace and its workloads are granted no rights")
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict) or not meta.get("name"):
            raise RecipeError(f"manifest object {index + 1} ({kind}): needs metadata.name")
        if meta.get("namespace") not in (None, ns):
            raise RecipeError(f"manifest object {index + 1} ({kind} {meta['name']}): namespace "
                              f"{meta['namespace']!r} is not the project's ({ns})")
        base = _meta(unit, settings, str(meta["name"]))
        meta["namespace"] = ns
        meta["labels"] = {**(meta.get("labels") or {}), **base["labels"]}
        meta["annotations"] = {**(meta.get("annotations") or {}), **base["annotations"]}
        out.append(obj)
    return out


def pod_templates(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The pod templates inside a CRD object (PyTorchJob, JobSet): tests validate them
    against the core schema as PodTemplates, since the CRDs' schemas are not Kubernetes'."""
    spec = obj.get("spec") or {}
    if obj.get("kind") == "PyTorchJob":
        return [r["template"] for r in (spec.get("pytorchReplicaSpecs") or {}).values()]
    if obj.get("kind") == "JobSet":
        return [r["template"]["spec"]["template"] for r in spec.get("replicatedJobs") or ()]
    return []


def to_yaml(objects: Iterable[Mapping[str, Any]]) -> str:
    import yaml

    return "".join("---\n" + yaml.safe_dump(dict(obj), sort_keys=False) for obj in objects)
