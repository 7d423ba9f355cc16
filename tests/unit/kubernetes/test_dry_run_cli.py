"""`corral agent --backend kubernetes --dry-run --spec FILE`, run as a real CLI process:
it prints YAML that kubectl could apply (every document valid against the schema), needs
no server, token or cluster, and says clearly what is wrong with a bad spec."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml


def corral(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CORRAL_", "KUBECONFIG"))}
    return subprocess.run([sys.executable, "-m", "corral.cli.main", *args], capture_output=True, text=True,
                          timeout=120, env={**clean, **(env or {}), "COLUMNS": "200"})


def test_dry_run_prints_valid_yaml(tmp_path: Path) -> None:
    spec = tmp_path / "train.yaml"
    spec.write_text(yaml.safe_dump({"type": "fine_tuning", "name": "tune", "project": "nlp", "base_model": "org/m",
                                    "dataset": "d", "image": "trainer:1", "resources": {"gpu": 4, "memory": "64Gi"},
                                    "secrets": {"HF_TOKEN": "hf"}}))
    settings = tmp_path / "cluster.yaml"
    settings.write_text("gpu_resource: amd.com/gpu\nnode_selector: {pool: mi300}\n")
    done = corral("agent", "--backend", "kubernetes", "--dry-run", "--spec", str(spec), "--kube-config", str(settings))
    assert done.returncode == 0, done.stderr
    documents = list(yaml.safe_load_all(done.stdout))
    assert [d["kind"] for d in documents] == ["Namespace", "ServiceAccount", "PersistentVolumeClaim", "Secret", "Job"]
    for document in documents:
        kubernetes_validate.validate(document, "1.34.0", strict=True)
    job = documents[-1]
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["amd.com/gpu"] == "4"
    assert job["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "mi300"}
    assert documents[3]["stringData"] == {"HF_TOKEN": "<value of project secret hf>"}


def test_dry_run_of_a_service_as_json(tmp_path: Path) -> None:
    spec = tmp_path / "llm.json"
    spec.write_text(json.dumps({"type": "inference", "name": "llm", "project": "nlp", "model": "org/llm"}))
    done = corral("agent", "--backend", "kubernetes", "--dry-run", "--spec", str(spec))
    assert done.returncode == 0, done.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(done.stdout)]
    assert kinds[-3:] == ["Secret", "Deployment", "Service"]


def test_dry_run_errors_are_clear(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump({"type": "training", "name": "t", "project": "nlp"}))
    done = corral("agent", "--backend", "kubernetes", "--dry-run", "--spec", str(spec))
    assert done.returncode != 0 and "dataset" in done.stderr and "Traceback" not in done.stderr
    settings = tmp_path / "cluster.yaml"
    settings.write_text("gpu_resorce: amd.com/gpu\n")
    good = tmp_path / "ok.yaml"
    good.write_text(yaml.safe_dump({"type": "custom", "name": "c", "project": "nlp", "image": "busybox"}))
    done = corral("agent", "--backend", "kubernetes", "--dry-run", "--spec", str(good), "--kube-config", str(settings))
    assert done.returncode != 0 and "unknown kubernetes setting(s) gpu_resorce" in done.stderr
    done = corral("agent", "--backend", "local", "--dry-run", "--spec", str(good))
    assert done.returncode != 0 and "--backend kubernetes" in done.stderr
    done = corral("agent", "--token-file", str(good))  # not a dry run: the server is still required
    assert done.returncode != 0 and "CORRAL_SERVER" in done.stderr


def test_the_agent_without_a_cluster_says_where_to_point_it(tmp_path: Path) -> None:
    done = corral("agent", "--backend", "kubernetes", "--server", "http://127.0.0.1:9", "--state-dir",
                  str(tmp_path / "state"), env={"KUBECONFIG": str(tmp_path / "missing"), "CORRAL_AGENT_TOKEN": "x"})
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "cannot find the Kubernetes API server" in " ".join(done.stderr.split())
