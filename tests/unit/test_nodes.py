"""Multi-node training: the spec's ``nodes`` (training types only, 1 to 64), the job holding
every node's resources, carried in ``Launch.nodes``; Kubernetes makes that many pods of one
node's share each (schema-validated); Slurm asks for that many nodes."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from corral.backends.base import BackendError, Launch
from corral.backends.kubernetes.dryrun import render_workload
from corral.backends.kubernetes.render import JOBSET_CRD, PYTORCHJOB_CRD, pod_templates
from corral.backends.recipes import ComponentRef, build_launches
from corral.backends.slurm.script import SlurmSite, batch_script, sbatch_options
from corral.domain.resources import Resources
from corral.domain.workloads import WorkloadSpec, error_field, plan_components

from tests.unit.kubernetes.test_manifests import VERSIONS, validate

SPEC = TypeAdapter(WorkloadSpec)
TRAIN = {"type": "pre_training", "name": "big", "project": "p", "dataset": "web", "command": ["torchrun", "t.py"],
         "resources": {"gpu": 2, "cpu": 4, "memory": "16Gi"}, "nodes": 3}


def test_nodes_multiply_what_the_job_holds():
    spec = SPEC.validate_python(TRAIN)
    assert spec.nodes == 3
    [plan] = plan_components(spec)
    assert plan.kind == "job" and plan.requests == Resources(6, 12000, 48 * 2**30, 0)
    one = SPEC.validate_python({k: v for k, v in TRAIN.items() if k != "nodes"})
    assert one.nodes == 1 and plan_components(one)[0].requests == Resources(2, 4000, 16 * 2**30, 0)
    for kind, extra in (("training", {}), ("fine_tuning", {"base_model": "b"})):
        assert SPEC.validate_python({**TRAIN, "type": kind, **extra}).nodes == 3


@pytest.mark.parametrize(("body", "field", "needle"), [
    ({**TRAIN, "nodes": 0}, "nodes", "greater than or equal to 1"),
    ({**TRAIN, "nodes": 65}, "nodes", "less than or equal to 64"),
    ({**TRAIN, "nodes": "many"}, "nodes", "valid integer"),
    ({"type": "evaluation", "name": "e", "project": "p", "model": "m", "tasks": ["x"], "command": "x", "nodes": 2},
     "nodes", "Extra inputs"),
    ({"type": "inference", "name": "i", "project": "p", "model": "m", "nodes": 2}, "nodes", "Extra inputs"),
])
def test_bad_nodes_are_refused_naming_the_field(body, field, needle):
    with pytest.raises(ValidationError) as caught:
        SPEC.validate_python(body)
    (error,) = caught.value.errors()
    assert error_field(error) == field and needle in error["msg"], error


def test_the_launch_carries_the_nodes(tmp_path: Path):
    data = SPEC.validate_python(TRAIN).model_dump(mode="json", exclude_none=True)
    [launch] = build_launches(workload_id=9, project="p", workload_type="pre_training", spec=data,
                              components=[ComponentRef(1, "job", gpu=6, cpu_millicores=12000, memory_bytes=48 << 30)],
                              work_root=tmp_path)
    assert launch.nodes == 3 and launch.gpu == 6
    assert Launch.from_dict(launch.to_dict()) == launch
    with pytest.raises(BackendError, match="nodes must be"):
        Launch(1, 1, "p", "training", "n", command=("x",), nodes=0)
    with pytest.raises(BackendError, match="only a job spans nodes"):
        Launch(1, 1, "p", "inference", "n", kind="server", command=("x",), nodes=2)


def test_slurm_asks_for_the_nodes_and_each_nodes_share():
    launch = Launch(1, 9, "p", "pre_training", "p-w9-job", command=("torchrun", "t.py"), gpu=6,
                    cpu_millicores=12000, memory_bytes=48 << 30, nodes=3)
    options = sbatch_options(launch, SlurmSite(), Path("/w/1"), None, nodes=launch.nodes)
    assert {"--nodes=3", "--ntasks-per-node=1", "--gres=gpu:2", "--cpus-per-task=4", "--mem=16384M"} <= set(options)
    script = batch_script(launch, component_dir=Path("/w/1"), home=Path("/w"), run_as=None, nodes=launch.nodes)
    assert "exec srun --ntasks-per-node=1" in script and 'NNODES="$SLURM_NNODES"' in script


@pytest.mark.parametrize("crds", [(), (PYTORCHJOB_CRD,), (JOBSET_CRD,)])
def test_kubernetes_makes_a_pod_per_node_with_one_nodes_share(crds: tuple[str, ...]):
    objects = render_workload(TRAIN, workload_id=9, crds=crds)
    main = objects[-1]
    if main["kind"] == "Job":
        assert main["spec"]["completions"] == 3 and main["spec"]["parallelism"] == 3
        templates = [main["spec"]["template"]]
    elif main["kind"] == "PyTorchJob":
        replicas = main["spec"]["pytorchReplicaSpecs"]
        assert replicas["Master"]["replicas"] + replicas["Worker"]["replicas"] == 3
        templates = pod_templates(main)
    else:
        assert main["spec"]["replicatedJobs"][0]["template"]["spec"]["completions"] == 3
        templates = pod_templates(main)
    for template in templates:
        limits = template["spec"]["containers"][0]["resources"]["limits"]
        assert limits == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2"}
    for version in VERSIONS:
        for obj in objects:
            validate(obj, version)
