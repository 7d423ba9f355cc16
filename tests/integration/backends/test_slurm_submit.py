"""Submitting and cancelling many components at once on real Slurm daemons
(scripts/slurm-test-cluster): several ``sbatch`` in flight (bounded), one job per component
all the same, nothing submitted twice after a restart or with the state lost, one
``scancel`` for a bulk stop, and the agent handing its work to the backend in groups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from corral.agent.loop import START_CHUNK, Agent
from corral.backends.base import BackendError
from corral.backends.slurm import SlurmBackend
from corral.domain.statuses import ComponentStatus as S
from tests.conftest import work_root_for

from .conftest import Watcher
from .slurm_support import job, make_slurm, slurm_cluster, wait_for  # noqa: F401 - fixtures


def counting_bin(tmp_path: Path) -> Path:
    """A directory whose sbatch and scancel are Slurm's own, each run logged: "in" when it
    starts, "out" when it ends (``bin_dir`` of the backend's commands)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("sbatch", "scancel", "squeue", "scontrol", "sacct"):
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\necho "{name} in" >> {bin_dir}/log\n/usr/bin/{name} "$@"\nrc=$?\n'
                           f'echo "{name} out" >> {bin_dir}/log\nexit $rc\n')
        wrapper.chmod(0o755)
    (bin_dir / "log").touch()
    return bin_dir


def calls(bin_dir: Path, name: str) -> list[str]:
    return [line.split()[1] for line in (bin_dir / "log").read_text().splitlines() if line.split()[0] == name]


def most_at_once(events: list[str]) -> int:
    running = most = 0
    for event in events:
        running += 1 if event == "in" else -1
        most = max(most, running)
    return most


def counted(backend: SlurmBackend, bin_dir: Path) -> SlurmBackend:
    backend.slurm.bin_dir = str(bin_dir)
    return backend


def test_many_components_go_to_slurm_a_few_sbatch_at_once_each_its_own_job_and_never_twice(
        make_slurm, slurm_cluster, tmp_path):
    bin_dir = counting_bin(tmp_path)
    backend = counted(make_slurm(), bin_dir)
    launches = [job(i, f"echo component {i}") for i in range(1, 13)]
    refused = job(13, "true", memory=100 << 30)  # more memory than any node has: sbatch refuses it
    errors = backend.start_many([*launches[:6], refused, *launches[6:], launches[0]])  # twice: once
    assert list(errors) == [13] and isinstance(errors[13], BackendError)
    assert "sbatch refused the job" in str(errors[13])
    submitted = calls(bin_dir, "sbatch")
    assert submitted.count("in") == 13 and 1 < most_at_once(submitted) <= backend.submit_concurrency
    # One job per component, named and commented for it, each running its own command.
    # (Slurm keeps a refused job's record too, FAILED: not one of Corral's.)
    listed = {name: job_id for job_id, name, state in slurm_cluster.jobs(make_slurm.prefix) if state != "FAILED"}
    assert listed == {f"{make_slurm.prefix}{i}": backend._jobs[i].job_id for i in range(1, 13)}
    assert 13 not in backend._jobs
    watcher = Watcher(backend)
    for i in range(1, 13):
        assert watcher.wait(i, S.COMPLETED, timeout=30).exit_code == 0
        assert backend.logs(i) == f"component {i}\n"
    # The agent restarted (same state) and its state lost (a crash right after sbatch):
    # both find every job, neither submits one.
    (bin_dir / "log").write_text("")
    backend.close()
    again = counted(make_slurm(), bin_dir)
    assert again.start_many(launches) == {}
    again.close()
    lost = counted(make_slurm("slurm-lost", work="slurm"), bin_dir)
    assert lost.start_many(launches) == {}
    assert calls(bin_dir, "sbatch") == []
    assert {i: lost._jobs[i].job_id for i in range(1, 13)} == {i: backend._jobs[i].job_id for i in range(1, 13)}
    assert len([state for _, _, state in slurm_cluster.jobs(make_slurm.prefix) if state != "FAILED"]) == 12


def test_a_bulk_stop_is_one_scancel_and_each_component_ends_as_it_should(make_slurm, slurm_cluster, tmp_path):
    bin_dir = counting_bin(tmp_path)
    backend = counted(make_slurm(), bin_dir)
    watcher = Watcher(backend)
    assert backend.start_many([job(i, "sleep 60") for i in range(1, 6)] + [job(6, "true")]) == {}
    assert backend.start_many([job(7, "sleep 60", gpu=8 * 4)]) == {}  # every GPU of the cluster: waits
    for i in range(1, 6):
        watcher.wait(i, S.RUNNING)
    watcher.wait(6, S.COMPLETED)
    (bin_dir / "log").write_text("")
    backend.stop_many([1, 2, 3, 4, 5, 6, 7, 99])  # running, finished, pending, unknown
    assert calls(bin_dir, "scancel") == ["in", "out"]
    assert calls(bin_dir, "squeue") == ["in", "out"]  # for 99 only: is it Corral's job on Slurm?
    for i in (1, 2, 3, 4, 5, 7):
        assert watcher.wait(i, S.DELETED).reason.endswith(f"Slurm job {backend._jobs[i].job_id} cancelled")
    assert watcher.wait(6, S.DELETED).reason == "deleted after it finished"
    assert watcher.wait(99, S.DELETED).reason == "not on the Slurm cluster"
    assert {state for _, _, state in slurm_cluster.jobs(make_slurm.prefix)} <= {"CANCELLED", "COMPLETED"}
    backend.stop_many([1, 2])  # idempotent: nothing left to cancel
    assert calls(bin_dir, "scancel") == ["in", "out"]


def test_the_spec_asking_for_nodes_where_the_admin_places_the_jobs_is_refused_clearly(make_slurm, slurm_cluster):
    backend = make_slurm(project_options={"proj": ("-N", "1", "--exclusive")})
    with pytest.raises(BackendError) as refused:
        backend.start(job(1, "true", nodes=2))
    assert str(refused.value) == (
        "the spec asks for 2 nodes, but this cluster's sbatch options for project 'proj' place the job "
        "themselves (-N 1): drop nodes from the spec, or ask the cluster's admin")
    assert slurm_cluster.jobs(make_slurm.prefix) == [] and 1 not in backend._jobs
    backend.start(job(2, "echo one node"))  # without nodes in the spec: the admin's options apply
    assert Watcher(backend).wait(2, S.COMPLETED).exit_code == 0


RUN = {"action": "run", "project": "proj", "type": "custom", "spec": {"command": "sleep 60"}}


class Reports:
    """The control plane's side of the agent's reports (all apply() sends)."""

    def __init__(self) -> None:
        self.sent: list[list[dict[str, Any]]] = []

    def report(self, updates: list[dict[str, Any]]) -> dict[str, Any]:
        self.sent.append(list(updates))
        return {}


def test_the_agent_hands_its_work_to_the_backend_in_groups(make_slurm, slurm_cluster, tmp_path):
    bin_dir = counting_bin(tmp_path)
    backend = counted(make_slurm(), bin_dir)
    client = Reports()
    agent = Agent(client, backend, work_root=work_root_for(tmp_path / "runs"))  # type: ignore[arg-type]
    items = [{**RUN, "workload_id": w, "component_ids": [w],
              "components": [{"id": w, "kind": "job", "status": "Pending", "gpu": 0, "cpu": 100,
                              "memory": 64 << 20}]} for w in range(1, 41)]
    bad = {**RUN, "workload_id": 41, "component_ids": [41],  # more memory than any node has: sbatch refuses it
           "components": [{"id": 41, "kind": "job", "status": "Pending", "gpu": 0, "cpu": 0, "memory": 100 << 30}]}
    agent.apply({"full": False, "items": [*items[:20], bad, *items[20:]]})
    submitted = calls(bin_dir, "sbatch")
    assert submitted.count("in") == 41 and most_at_once(submitted) > 1  # the refused one too
    assert sorted(backend._jobs) == list(range(1, 41))
    assert agent.unsent[41]["status"] == "Failed" and agent.unsent[41]["reason"].startswith(
        "could not start: sbatch refused the job")
    # Two start_many calls (START_CHUNK launches, then the rest): what the first one's jobs
    # were observed doing was reported in between, not after the whole batch.
    assert START_CHUNK == 32 and len(client.sent) == 1
    assert client.sent[0] and {u["component_id"] for u in client.sent[0]} <= set(range(1, 32))
    # A bulk delete: a stop item per workload, one scancel for them all.
    agent.apply({"full": False, "items": [{"action": "stop", "stop_as": "Deleted", "workload_id": w,
                                           "component_ids": [w]} for w in range(1, 41)]})
    assert calls(bin_dir, "scancel") == ["in", "out"]
    wait_for(lambda: {state for _, name, state in slurm_cluster.jobs(make_slurm.prefix)
                      if name != f"{make_slurm.prefix}41"} == {"CANCELLED"})
