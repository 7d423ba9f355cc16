"""Every manifest the Kubernetes backend renders, for every workload type and option, is
valid against the official OpenAPI schema of several Kubernetes minor versions
(kubernetes-validate ships them; strict: an unknown field is an error)."""

from __future__ import annotations

import itertools
from typing import Any

import kubernetes_validate
import pytest

from corral.backends.kubernetes import labels as L
from corral.backends.kubernetes.dryrun import render_workload
from corral.backends.kubernetes.render import JOBSET_CRD, PYTORCHJOB_CRD, pod_templates, to_yaml
from corral.backends.kubernetes.settings import KubeSettings
from corral.backends.base import BackendError
from corral.backends.recipes import RecipeError

VERSIONS = ("1.30.0", "1.34.0", "1.37.0")  # oldest and newest minor kubernetes-validate ships that we support
CRD_KINDS = {"PyTorchJob", "JobSet", "HTTPRoute"}  # not in Kubernetes' own schema
RES = {"gpu": 2, "cpu": "4", "memory": "16Gi"}

SPECS: dict[str, dict[str, Any]] = {
    "model_download_hf": {"type": "model_download", "source": "meta-llama/Llama-3.1-8B", "revision": "main",
                          "secrets": {"HF_TOKEN": "hf"}},
    "model_download_url": {"type": "model_download", "source": "https://example.com/m.safetensors",
                           "model_name": "m"},
    "inference_vllm": {"type": "inference", "model": "llama", "replicas": 2, "resources": RES},
    "inference_custom": {"type": "inference", "model": "x/y", "engine": "custom", "image": "ghcr.io/a/b:1",
                         "command": ["serve", "--port", "9000"], "port": 9000},
    "training": {"type": "training", "dataset": "s3://d", "image": "pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime",
                 "command": ["python", "train.py"], "resources": RES, "base_model": "llama"},
    "pre_training": {"type": "pre_training", "dataset": "web", "command": "torchrun train.py", "resources": RES},
    "fine_tuning": {"type": "fine_tuning", "dataset": "d", "base_model": "org/base", "image": "trainer:1",
                    "output_model": "tuned", "env": {"EPOCHS": "3"}},
    "evaluation": {"type": "evaluation", "model": "tuned", "tasks": ["mmlu", "gsm8k"], "image": "lm-eval:1"},
    "workspace": {"type": "workspace", "resources": {"gpu": 1}},
    "workspace_command": {"type": "workspace", "image": "codercom/code-server:4",
                          "command": ["code-server", "--bind-addr", "0.0.0.0:{port}"]},
    "custom_command": {"type": "custom", "image": "busybox", "command": ["sh", "-c", "echo hi"]},
    "custom_script": {"type": "custom", "batch_script": "#!/bin/sh\necho hi\n"},
    "custom_service": {"type": "custom", "image": "python:3.12", "service": True,
                       "command": "python -m http.server $PORT"},
    "custom_image_only": {"type": "custom", "image": "busybox"},
    "custom_manifest": {"type": "custom", "manifest": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "b"}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
         "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
             "metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "w", "image": "nginx"}]}}}}]},
}

SETTINGS = {
    "default": KubeSettings(),
    "amd_tainted": KubeSettings(gpu_resource="amd.com/gpu", node_selector={"pool": "mi300"},
                                tolerations=({"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
                                image_pull_secrets=("regcred",), models_storage_class="fast",
                                models_access_mode="ReadWriteOnce"),
    "ingress": KubeSettings(apps_domain="apps.example.com", ingress_class="nginx"),
    "httproute": KubeSettings(apps_domain="apps.example.com", gateway="gateways/public"),
    "kueue": KubeSettings(queue_name="team-a", priority_classes={"high": "corral-high", "low": "corral-low"}),
}


def validate(obj: dict[str, Any], version: str) -> None:
    if obj["kind"] in CRD_KINDS:
        for template in pod_templates(obj):  # the pods inside are Kubernetes' own shape
            kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate",
                                          "metadata": {"name": "t", "namespace": "n"}, "template": template},
                                         version, strict=True)
        return
    kubernetes_validate.validate(obj, version, strict=True)


def _spec(name: str) -> dict[str, Any]:
    return {"name": name.replace("_", "-"), "project": "vision", **SPECS[name]}


CASES = [(s, k, n) for s, k in itertools.product(SPECS, SETTINGS) for n in (1,)] + [
    (s, "default", 3) for s in ("training", "pre_training", "fine_tuning", "custom_command")]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("spec", "settings", "nodes"), CASES)
def test_every_manifest_is_valid(spec: str, settings: str, nodes: int, version: str) -> None:
    for crds in ((), (PYTORCHJOB_CRD,), (JOBSET_CRD,)) if nodes > 1 else ((),):
        objects = render_workload(_spec(spec), SETTINGS[settings], workload_id=42, crds=crds, nodes=nodes,
                                  submitter="ada@example.com")
        assert objects
        for obj in objects:
            validate(obj, version)


def test_invalid_manifest_is_caught_by_the_schema() -> None:
    """The check itself can fail: a field Kubernetes does not know is refused."""
    obj = render_workload(_spec("training"), KubeSettings(), workload_id=1)[-1]
    obj["spec"]["template"]["spec"]["containers"][0]["gpus"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(obj, VERSIONS[0])


def _by_kind(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        out.setdefault(obj["kind"], []).append(obj)
    return out


def _pod(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def test_batch_types_are_jobs_and_services_deployments_with_a_service() -> None:
    for name in ("model_download_hf", "training", "pre_training", "fine_tuning", "evaluation", "custom_script"):
        kinds = _by_kind(render_workload(_spec(name), workload_id=7))
        assert [j["metadata"]["name"] for j in kinds["Job"]] == ["w7-job"], name
        assert kinds["Job"][0]["spec"]["backoffLimit"] == 0
        assert "Deployment" not in kinds
    for name in ("inference_vllm", "workspace", "custom_service"):
        kinds = _by_kind(render_workload(_spec(name), workload_id=7))
        assert [d["metadata"]["name"] for d in kinds["Deployment"]] == ["w7-server"], name
        service = next(s for s in kinds["Service"] if s["metadata"]["name"] == "w7")
        assert service["spec"]["selector"][L.WORKLOAD] == "7"
        assert kinds["Deployment"][0]["spec"]["template"]["metadata"]["labels"][L.ROLE] == "server"


def test_gpus_cpu_memory_and_placement() -> None:
    objects = render_workload(_spec("inference_vllm"), SETTINGS["amd_tainted"], workload_id=3)
    deployment = _by_kind(objects)["Deployment"][0]
    pod = _pod(deployment)
    resources = pod["containers"][0]["resources"]
    # two replicas of 2 GPUs, 4 CPUs, 16Gi each: per pod, requests equal limits
    assert resources["limits"] == {"cpu": "4", "memory": "16Gi", "amd.com/gpu": "2"} == resources["requests"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert pod["nodeSelector"] == {"pool": "mi300"}
    assert pod["tolerations"][0]["key"] == "amd.com/gpu"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert "--tensor-parallel-size" in pod["containers"][0]["command"]


def test_labels_annotations_and_names_are_stable() -> None:
    first = render_workload(_spec("training"), workload_id=9, submitter="ada@example.com")
    assert first == render_workload(_spec("training"), workload_id=9, submitter="ada@example.com")  # idempotent
    job = _by_kind(first)["Job"][0]
    assert job["metadata"]["labels"] == {L.PROJECT: "vision", L.WORKLOAD: "9", L.COMPONENT: "1",
                                         L.TYPE: "training", L.ROLE: "job", L.MANAGED_BY: "corral"}
    assert job["metadata"]["annotations"] == {L.CREATED_BY: "corral", L.SUBMITTER: "ada@example.com",
                                              "corral.dev/result-model": "training-9"}
    assert job["spec"]["template"]["metadata"]["labels"][L.COMPONENT] == "1"
    assert {o["metadata"].get("namespace") for o in first} == {"corral-vision", None}  # the Namespace itself


def test_project_isolation_objects() -> None:
    objects = _by_kind(render_workload(_spec("fine_tuning"), workload_id=5))
    namespace = objects["Namespace"][0]
    assert namespace["metadata"]["name"] == "corral-vision"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    account = objects["ServiceAccount"][0]
    assert account["automountServiceAccountToken"] is False
    assert "RoleBinding" not in objects and "Role" not in objects  # granted nothing
    pod = _pod(objects["Job"][0])
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == objects["PersistentVolumeClaim"][0][
        "metadata"]["name"]


def test_secrets_live_in_a_secret_never_in_the_pod_spec() -> None:
    objects = _by_kind(render_workload(_spec("model_download_hf"), workload_id=4))
    secret = objects["Secret"][0]
    assert secret["metadata"]["namespace"] == "corral-vision"
    assert set(secret["stringData"]) == {"HF_TOKEN"}
    container = _pod(objects["Job"][0])["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    assert "HF_TOKEN" not in {e["name"] for e in container["env"]}
    assert "<value of project secret" not in to_yaml(objects["Job"])


def test_model_download_writes_to_the_store_that_later_workloads_mount() -> None:
    download = _pod(_by_kind(render_workload(_spec("model_download_url"), workload_id=1))["Job"][0])
    env = {e["name"]: e.get("value") for e in download["containers"][0]["env"]}
    assert env["CORRAL_DEST"] == "/models/m"
    assert download["containers"][0]["volumeMounts"][0] == {"name": "models", "mountPath": "/models",
                                                            "readOnly": False}
    serve = _pod(_by_kind(render_workload({**_spec("inference_vllm"), "model": "m"}, workload_id=2))["Deployment"][0])
    assert "/models/m" in serve["containers"][0]["command"]
    assert serve["containers"][0]["volumeMounts"][0]["readOnly"] is True


def test_multi_node_prefers_the_operators() -> None:
    indexed = _by_kind(render_workload(_spec("training"), workload_id=8, nodes=3))
    job = indexed["Job"][0]
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 3
    headless = indexed["Service"][0]
    assert headless["spec"]["clusterIP"] == "None" and _pod(job)["subdomain"] == headless["metadata"]["name"]
    env = {e["name"]: e for e in _pod(job)["containers"][0]["env"]}
    assert env["MASTER_ADDR"]["value"] == "w8-job-0.w8-job-nodes" and "fieldRef" in env["NODE_RANK"]["valueFrom"]
    pytorch = render_workload(_spec("training"), workload_id=8, nodes=3, crds=(PYTORCHJOB_CRD, JOBSET_CRD))[-1]
    assert pytorch["kind"] == "PyTorchJob"
    assert pytorch["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 2
    jobset = render_workload(_spec("training"), workload_id=8, nodes=3, crds=(JOBSET_CRD,))[-1]
    assert jobset["kind"] == "JobSet"
    assert render_workload(_spec("training"), KubeSettings(prefer_crds=False), workload_id=8, nodes=3,
                           crds=(PYTORCHJOB_CRD,))[-1]["kind"] == "Job"


def test_apps_domain_routes_to_corrals_proxy_not_the_workload() -> None:
    ingress = _by_kind(render_workload(_spec("workspace"), SETTINGS["ingress"], workload_id=6))["Ingress"][0]
    assert ingress["metadata"]["namespace"] == "corral-system"  # beside Corral's Service
    assert ingress["metadata"]["labels"][L.WORKLOAD] == "6"  # watched and deleted with its component
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "w6.apps.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": "corral", "port": {"number": 8000}}
    route = _by_kind(render_workload(_spec("workspace"), SETTINGS["httproute"], workload_id=6))["HTTPRoute"][0]
    assert route["metadata"]["namespace"] == "corral-system"
    assert route["spec"]["hostnames"] == ["w6.apps.example.com"]
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateways"}]
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "corral", "port": 8000}]


def test_custom_manifest_is_confined_to_the_project() -> None:
    objects = render_workload(_spec("custom_manifest"), workload_id=11)
    web = _by_kind(objects)["Deployment"][0]
    assert web["metadata"]["namespace"] == "corral-vision"
    assert web["metadata"]["labels"]["app"] == "web" and web["metadata"]["labels"][L.COMPONENT] == "1"
    for bad, message in (({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                           "metadata": {"name": "x"}}, "not allowed"),
                         ({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "x", "namespace": "kube-system"}},
                          "not the project's"),
                         ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}, "metadata.name")):
        with pytest.raises(RecipeError, match=message):
            render_workload({**_spec("custom_manifest"), "manifest": [bad]})


def test_vscode_is_refused_with_a_reason() -> None:
    with pytest.raises(RecipeError, match="code-server cannot require"):
        render_workload({**_spec("workspace"), "flavor": "vscode"})


def test_a_kueue_queue_labels_what_kueue_admits() -> None:
    job = _by_kind(render_workload(_spec("training"), SETTINGS["kueue"], workload_id=2))["Job"][0]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    deployment = _by_kind(render_workload(_spec("workspace"), SETTINGS["kueue"], workload_id=2))["Deployment"][0]
    assert deployment["spec"]["template"]["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"


def test_priorities_map_to_the_clusters_priority_classes() -> None:
    high = render_workload({**_spec("training"), "priority": "high"}, SETTINGS["kueue"], workload_id=3)
    assert _pod(_by_kind(high)["Job"][0])["priorityClassName"] == "corral-high"
    medium = render_workload(_spec("training"), SETTINGS["kueue"], workload_id=3)  # no class configured for it
    assert "priorityClassName" not in _pod(_by_kind(medium)["Job"][0])
    with pytest.raises(BackendError, match="expected low, medium or high"):
        KubeSettings(priority_classes={"urgent": "x"})
