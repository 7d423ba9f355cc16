"""A workload's time limit on Kubernetes: ``activeDeadlineSeconds`` on its Job (Indexed Job,
PyTorchJob, JobSet), schema-validated like every manifest; a DeadlineExceeded end is
Failed "time limit of 2h reached"; services and manifests refuse a limit, saying why."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client import (V1Container, V1Job, V1JobCondition, V1JobSpec, V1JobStatus, V1ObjectMeta, V1Pod,
                               V1PodSpec, V1PodStatus, V1PodTemplateSpec)

from corral.backends.kubernetes.dryrun import render_workload
from corral.backends.kubernetes.render import JOBSET_CRD, PYTORCHJOB_CRD
from corral.backends.kubernetes.states import crd_status, job_status, pod_status
from corral.backends.recipes import RecipeError
from corral.domain.statuses import ComponentStatus as S

from .test_manifests import VERSIONS, validate

TRAINING = {"type": "training", "name": "t", "project": "vision", "dataset": "d", "command": ["python", "train.py"],
            "resources": {"gpu": 2}, "time_limit": "2h"}


def _deadlines(objects: list[dict[str, Any]]) -> list[tuple[str, int | None]]:
    out = []
    for obj in objects:
        spec = obj.get("spec") or {}
        if obj["kind"] == "Job":
            out.append(("Job", spec.get("activeDeadlineSeconds")))
        elif obj["kind"] == "PyTorchJob":
            out.append(("PyTorchJob", spec["runPolicy"].get("activeDeadlineSeconds")))
        elif obj["kind"] == "JobSet":
            out.append(("JobSet", spec["replicatedJobs"][0]["template"]["spec"].get("activeDeadlineSeconds")))
    return out


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("nodes", "crds", "kind"), [(1, (), "Job"), (3, (), "Job"), (3, (PYTORCHJOB_CRD,), "PyTorchJob"),
                                                    (3, (JOBSET_CRD,), "JobSet")])
def test_the_time_limit_is_the_jobs_active_deadline(version: str, nodes: int, crds: tuple[str, ...], kind: str):
    objects = render_workload(TRAINING, workload_id=5, crds=crds, nodes=nodes)
    assert _deadlines(objects) == [(kind, 7200)]
    for obj in objects:
        validate(obj, version)
    without = render_workload({k: v for k, v in TRAINING.items() if k != "time_limit"}, workload_id=5, crds=crds,
                              nodes=nodes)
    assert _deadlines(without) == [(kind, None)]


@pytest.mark.parametrize("spec", [
    {"type": "model_download", "source": "org/model"},
    {"type": "evaluation", "model": "m", "tasks": ["mmlu"], "command": "eval"},
    {"type": "custom", "batch_script": "#!/bin/sh\nsleep 9\n"},
])
def test_every_batch_type_carries_it(spec: dict[str, Any]):
    objects = render_workload({"name": "b", "project": "vision", "time_limit": 90, **spec})
    assert _deadlines(objects) == [("Job", 90)]
    for obj in objects:
        validate(obj, VERSIONS[-1])


@pytest.mark.parametrize(("spec", "needle"), [
    ({"type": "inference", "model": "m"}, "time limit on a service is not available on kubernetes"),
    ({"type": "workspace"}, "time limit on a service is not available on kubernetes"),
    ({"type": "custom", "manifest": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}},
     "set activeDeadlineSeconds in the manifest"),
])
def test_services_and_manifests_refuse_a_limit(spec: dict[str, Any], needle: str):
    with pytest.raises(RecipeError, match=needle):
        render_workload({"name": "s", "project": "vision", "time_limit": "1h", **spec})


def _job(deadline: int | None, reason: str = "DeadlineExceeded") -> V1Job:
    template = V1PodTemplateSpec(spec=V1PodSpec(containers=[V1Container(name="main", image="x")]))
    condition = V1JobCondition(type="Failed", status="True", reason=reason,
                               message="Job was active longer than specified deadline")
    return V1Job(metadata=V1ObjectMeta(name="w1-job"), spec=V1JobSpec(template=template, active_deadline_seconds=deadline),
                 status=V1JobStatus(conditions=[condition]))


def test_a_job_past_its_deadline_is_failed_with_the_time_limit():
    seen = job_status(_job(7200))
    assert seen.status is S.FAILED
    assert seen.reason == "time limit of 2h reached (Job was active longer than specified deadline)"
    # a deadline Corral did not set (no limit in the Job's spec): Kubernetes' words, as before
    assert job_status(_job(None)).reason == "ran past its deadline: Job was active longer than specified deadline"
    assert job_status(_job(7200, "BackoffLimitExceeded")).reason.startswith("failed")


def test_a_pod_past_its_deadline_is_failed_with_the_time_limit():
    pod = V1Pod(metadata=V1ObjectMeta(name="p"),
                spec=V1PodSpec(containers=[V1Container(name="main", image="x")], active_deadline_seconds=5400),
                status=V1PodStatus(phase="Failed", reason="DeadlineExceeded",
                                   message="Pod was active on the node longer than the specified deadline"))
    seen = pod_status(pod)
    assert seen.status is S.FAILED and seen.reason == "time limit of 1h30m reached (DeadlineExceeded)"


def test_a_pytorchjob_past_its_deadline_is_failed_with_the_time_limit():
    obj = render_workload(TRAINING, workload_id=5, crds=(PYTORCHJOB_CRD,), nodes=3)[-1]
    obj["status"] = {"conditions": [{"type": "Failed", "status": "True", "reason": "PyTorchJobFailed",
                                     "message": "PyTorchJob w5-job is failed because it exceeded its active deadline"}]}
    seen = crd_status(obj)
    assert seen.status is S.FAILED and seen.reason.startswith("time limit of 2h reached (")
    obj["spec"]["runPolicy"].pop("activeDeadlineSeconds")
    assert crd_status(obj).reason.startswith("failed: ")
