"""What the Slurm backend asks sbatch for: nodes for a job with more GPUs than a node has,
per-project options (pure functions of corral.backends.slurm.script)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.backends.base import Launch
from corral.backends.slurm.script import SlurmSite, batch_script, listening_on, sbatch_options, split_nodes


@pytest.mark.parametrize(("gpu", "per_node", "nodes"), [
    (1, 8, 1), (8, 8, 1), (12, 8, 2), (16, 8, 2), (17, 8, 17), (24, 8, 3), (9, 4, 3), (10, 4, 5), (3, 0, 1),
])
def test_split_nodes(gpu: int, per_node: int, nodes: int):
    assert split_nodes(gpu, per_node) == nodes


def test_project_options_are_parsed_and_apply_to_that_project_only():
    site = SlurmSite.from_options(sbatch_options="--mail-type=NONE",
                                  project_sbatch_options="vision=--qos=high --exclusive; nlp=-p big")
    assert site.options_for("vision") == ("--mail-type=NONE", "--qos=high", "--exclusive")
    assert site.options_for("nlp") == ("--mail-type=NONE", "-p", "big")
    assert site.options_for("other") == ("--mail-type=NONE",)
    with pytest.raises(ValueError, match="PROJECT=OPTIONS"):
        SlurmSite.from_options(project_sbatch_options="--qos=high")


def test_a_job_spanning_nodes_asks_per_node_and_runs_its_command_with_srun():
    launch = Launch(1, 2, "p", "training", "p-w2-job", command=("python", "train.py"), gpu=12,
                    cpu_millicores=4000, memory_bytes=8 << 30)
    options = sbatch_options(launch, SlurmSite(), Path("/w/1"), None, nodes=2)
    assert {"--nodes=2", "--ntasks-per-node=1", "--gres=gpu:6", "--cpus-per-task=2", "--mem=4096M"} <= set(options)
    assert "--ntasks=1" not in options
    script = batch_script(launch, component_dir=Path("/w/1"), home=Path("/w"), run_as=None, nodes=2)
    assert script.rstrip().endswith("exec srun --ntasks-per-node=1 --kill-on-bad-exit=1 /bin/sh -c "
                                    "'NODE_RANK=$SLURM_NODEID; export NODE_RANK; exec \"$@\"' corral-task python "
                                    "train.py")
    # The admin's node options win: Corral asks for none.
    site = SlurmSite(project_options={"p": ("--nodes=4",)})
    assert not {"--nodes=1", "--ntasks=1"} & set(sbatch_options(launch, site, Path("/w/1"), None))


def test_the_admins_options_that_place_a_projects_jobs_are_named_as_given():
    site = SlurmSite.from_options(sbatch_options="--exclusive",
                                  project_sbatch_options="a=--nodes=2; b=-N 3 --qos=x; c=-N3; d=--ntasks 4; e=--qos=x")
    assert site.node_options("a") == ["--nodes=2"] and site.places_nodes("a")
    assert site.node_options("b") == ["-N 3"]
    assert site.node_options("c") == ["-N3"]
    assert site.node_options("d") == ["--ntasks 4"]
    assert site.node_options("e") == [] and not site.places_nodes("e")


def test_a_services_loopback_bind_address_becomes_the_sites():
    vllm = ("vllm", "serve", "m", "--host", "127.0.0.1", "--port", "{port}")
    assert listening_on(vllm, "0.0.0.0") == ("vllm", "serve", "m", "--host", "0.0.0.0", "--port", "{port}")
    jupyter = ("jupyter", "lab", "--ip", "127.0.0.1", "--ip=127.0.0.1", "--ServerApp.base_url=/")
    assert listening_on(jupyter, "0.0.0.0") == ("jupyter", "lab", "--ip", "0.0.0.0", "--ip=0.0.0.0",
                                                "--ServerApp.base_url=/")
    mine = ("python", "serve.py", "127.0.0.1", "--bind", "127.0.0.1")  # a user's own: theirs to decide
    assert listening_on(mine, "0.0.0.0") == mine
