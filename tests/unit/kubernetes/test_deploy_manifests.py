"""deploy/kubernetes/: the agent's RBAC and Deployment are valid Kubernetes objects, grant
what the backend needs for every object it renders, and nothing that lets it hand out
rights (no RBAC objects, no wildcards, no escalate/bind/impersonate)."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from corral.backends.kubernetes.dryrun import render_workload
from corral.backends.kubernetes.settings import KubeSettings
from corral.backends.kubernetes.backend import CUSTOM, WATCHED
from tests.unit.kubernetes.test_manifests import SETTINGS, SPECS, VERSIONS, _spec

DEPLOY = Path(__file__).resolve().parents[3] / "deploy" / "kubernetes"
PLURALS = {"Namespace": "namespaces", "ServiceAccount": "serviceaccounts", "PersistentVolumeClaim":
           "persistentvolumeclaims", "Secret": "secrets", "Service": "services", "ConfigMap": "configmaps",
           "Pod": "pods", "Job": "jobs", "Deployment": "deployments", "StatefulSet": "statefulsets",
           "Ingress": "ingresses", "PyTorchJob": "pytorchjobs", "JobSet": "jobsets", "HTTPRoute": "httproutes"}


def documents() -> list[dict]:
    return [d for path in sorted(DEPLOY.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d]


def grants(rules: list[dict], group: str, resource: str, verb: str) -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules)


@pytest.mark.parametrize("version", VERSIONS)
def test_deploy_manifests_are_valid(version: str) -> None:
    docs = documents()
    assert {d["kind"] for d in docs} >= {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                         "Deployment", "ConfigMap", "Service"}
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_agent_may_do_what_the_backend_does_and_no_more() -> None:
    role = next(d for d in documents() if d["kind"] == "ClusterRole")
    rules = role["rules"]
    for rule in rules:
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"]
        assert "rbac.authorization.k8s.io" not in rule["apiGroups"]
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
    made = set()
    for name in SPECS:
        for settings in SETTINGS.values():
            for obj in render_workload(_spec(name), settings, nodes=1):
                made.add((obj["apiVersion"].rpartition("/")[0], obj["kind"]))
    made |= {("kubeflow.org", "PyTorchJob"), ("jobset.x-k8s.io", "JobSet")}
    for group, kind in made:
        verbs = ("create", "get", "list", "watch") if kind == "Namespace" else ("create", "delete", "list", "watch")
        for verb in verbs:
            assert grants(rules, group, PLURALS[kind], verb), (group, kind, verb)
    for kind in WATCHED:  # the watches
        group = {"Job": "batch", "Deployment": "apps", "StatefulSet": "apps",
                 "Ingress": "networking.k8s.io"}.get(kind, "")
        assert grants(rules, group, PLURALS[kind], "watch"), kind
    for kind, (_, group, _, _) in CUSTOM.items():
        assert grants(rules, group, PLURALS[kind], "watch"), kind
    assert grants(rules, "", "pods/log", "get") and grants(rules, "", "nodes", "list")
    assert grants(rules, "", "events", "watch")  # pods refused to a Job (FailedCreate)
    assert grants(rules, "apiextensions.k8s.io", "customresourcedefinitions", "get")
    binding = next(d for d in documents() if d["kind"] == "ClusterRoleBinding")
    account = next(d for d in documents() if d["kind"] == "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": account["metadata"]["namespace"]}]


def test_the_agents_settings_are_valid_settings() -> None:
    config = next(d for d in documents() if d["kind"] == "ConfigMap")
    settings = KubeSettings.from_mapping(yaml.safe_load(config["data"]["kubernetes.yaml"]))
    assert settings.routes == "ingress"
    deployment = next(d for d in documents() if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "corral-agent"
