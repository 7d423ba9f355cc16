"""The Slurm backend's view of the cluster, against real daemons: capacity from the nodes
(a drained node lowers it), jobs submitted outside Corral discovered with their
resources (job arrays too), site options and jobs spanning nodes, a node drained or going down under a
job, slurmctld stopped and started again. (A service's
endpoint and readiness: tests/conformance/.)"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import uuid

import httpx

from corral.backends.base import Launch
from corral.backends.recipes import ComponentRef, build_launches
from corral.backends.slurm import SlurmSite
from corral.backends.slurm.commands import SlurmUnavailable
from corral.domain.statuses import ComponentStatus as S

from .conftest import Watcher
from .slurm_support import SCRIPT, STATE, job, make_slurm, slurm_cluster, wait_for  # noqa: F401 - fixtures


def test_capacity_comes_from_the_nodes_and_a_drained_node_lowers_it(make_slurm, slurm_cluster):
    backend = make_slurm()
    capacity = wait_for(lambda: (c := backend.capacity()).nodes and len(c.nodes) == 4 and c)
    assert [n.name for n in capacity.nodes] == ["n1", "n2", "n3", "n4"]  # type: ignore[union-attr]
    node = capacity.nodes[0]
    assert (node.cpu_millicores, node.memory_bytes, len(node.gpus)) == (8000, 4000 << 20, 8)
    assert capacity.total().gpu == 32 and capacity.isolation
    try:
        slurm_cluster.run("scontrol", "update", "nodename=n4", "state=drain", "reason=corral-test")
        drained = backend.capacity()
        assert [n.name for n in drained.nodes] == ["n1", "n2", "n3"] and drained.total().gpu == 24
    finally:
        slurm_cluster.run("scontrol", "update", "nodename=n4", "state=resume")
    wait_for(lambda: len(backend.capacity().nodes) == 4)
    # A partition that is not the nodes' leaves them out.
    assert make_slurm("other", partition="nope").capacity().nodes == ()


def test_a_job_submitted_outside_corral_is_discovered_with_its_resources(make_slurm, slurm_cluster):
    backend = make_slurm()
    name = f"theirs-{uuid.uuid4().hex[:6]}"
    job_id = slurm_cluster.sbatch("-J", name, "--account=vision", "--gres=gpu:2", "-c", "3", "--mem=512M",
                                  "-o", "/dev/null")
    try:
        found = wait_for(lambda: [d for d in backend.discover() if d.native_name == f"slurm-job-{job_id}"])
        [theirs] = found  # type: ignore[misc]
        assert (theirs.kind, theirs.project, theirs.gpu, theirs.cpu_millicores, theirs.memory_bytes) == (
            "job", "vision", 2, 3000, 512 << 20)
        assert theirs.user == "root" and theirs.started_at is not None
        by_partition = make_slurm("by-partition", project_from="partition")
        assert {d.project for d in by_partition.discover() if d.native_name == f"slurm-job-{job_id}"} == {"gpu"}
    finally:
        slurm_cluster.scancel(job_id)
    wait_for(lambda: f"slurm-job-{job_id}" not in {d.native_name for d in backend.discover()})


def test_site_options_reach_the_job_and_a_job_spanning_two_nodes_runs_srun_on_both(make_slurm):
    site = SlurmSite.from_options(account="ml,proj=cv", sbatch_options="--nodes=2 --ntasks-per-node=1",
                                  time_limit="5", partition="gpu")
    backend = make_slurm("multi", partition=site.partition, account=site.account, account_map=site.account_map,
                         extra_options=site.extra_options, time_limit=site.time_limit)
    watcher = Watcher(backend)
    backend.start(job(1, "srun hostname -s >/dev/null && srun sh -c 'echo task $SLURM_PROCID on $SLURMD_NODENAME'"))
    detail = backend.inspect(1)["job"]
    assert (detail["Account"], detail["TimeLimit"], detail["Partition"], detail["NumNodes"].split("-")[0]) == (
        "cv", "00:05:00", "gpu", "2")
    watcher.wait(1, S.COMPLETED)
    lines = sorted(line for line in backend.logs(1).splitlines() if line.startswith("task "))
    assert [line.split(" on ")[0] for line in lines] == ["task 0", "task 1"]
    assert len({line.split(" on ")[1] for line in lines}) == 2


def _start_cluster(slurm_cluster) -> None:  # type: ignore[no-untyped-def]
    subprocess.run([str(SCRIPT), "start"], env={**os.environ, **slurm_cluster.env}, check=True,
                   capture_output=True, timeout=120)


def test_while_slurmctld_is_down_statuses_stay_calls_back_off_and_nothing_is_lost_or_doubled(make_slurm,
                                                                                             slurm_cluster):
    backend = make_slurm()
    watcher = Watcher(backend)
    backend.start(job(1, "sleep 8; echo survived"))
    running = watcher.wait(1, S.RUNNING)
    backend.slurm.timeout_s = 1.0  # Slurm's clients retry for MessageTimeout (10 s) before giving up
    backend.slurm.max_backoff_s = 4.0
    pid = int((STATE / "slurmctld.pid").read_text())
    os.kill(pid, signal.SIGTERM)  # slurmctld stopped for real
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"))
    try:
        lost = watcher.wait(1, lambda o: "unreachable" in o.reason, timeout=30)
        assert lost.status is S.RUNNING and lost.reason.startswith(running.reason + " [Slurm controller unreachable "
                                                                                   "since ")
        # An agent's calls for 6 s (polls every 0.1 s, heartbeats, discovery, a start that
        # fails its step): each fails at once while backing off (1 s, 2 s, 4 s), so only a
        # few commands run, and the component's status is said once, not again and again.
        runs, seen, unavailable = backend.slurm.runs, len(watcher.history[1]), 0
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            watcher.poll()
            for call in (backend.capacity, backend.discover, lambda: backend.start(job(2, "echo later"))):
                try:
                    call()
                except SlurmUnavailable:
                    unavailable += 1
            time.sleep(0.1)
        assert unavailable >= 3 * 30 and backend.slurm.runs - runs <= 4, (unavailable, backend.slurm.runs - runs)
        assert len(watcher.history[1]) == seen and watcher.latest(1).status is S.RUNNING  # type: ignore[union-attr]
        assert 2 not in backend._jobs
    finally:
        _start_cluster(slurm_cluster)

    def retried() -> bool:  # the agent's next step, once Slurm answers (at most max_backoff_s later)
        try:
            backend.start(job(2, "echo later"))
        except SlurmUnavailable:
            return False
        return True

    wait_for(retried, timeout=30)
    done = watcher.wait(1, S.COMPLETED, timeout=30)
    assert "unreachable" not in done.reason and backend.logs(1) == "survived\n"
    assert watcher.wait(2, S.COMPLETED).exit_code == 0
    assert backend.slurm.backoff_s == 0
    assert sorted(name for _, name, _ in slurm_cluster.jobs(make_slurm.prefix)) == [
        f"{make_slurm.prefix}1", f"{make_slurm.prefix}2"]


def test_a_job_asking_for_more_gpus_than_a_node_has_spans_nodes_with_srun(make_slurm):
    # Nodes of 8 GPUs: 12 GPUs are 2 nodes of 6, one task on each, with what distributed
    # launchers read. The project's own sbatch options apply to its jobs only.
    backend = make_slurm(project_options={"train": ("--time=3",)})
    watcher = Watcher(backend)
    show = ('echo "rank=$NODE_RANK of $NNODES on $SLURMD_NODENAME master=$MASTER_ADDR:$MASTER_PORT '
            'gpus=$CUDA_VISIBLE_DEVICES"')
    backend.start(Launch(1, 10, "train", "training", "train-w10-job", command=("/bin/sh", "-c", show), gpu=12,
                         cpu_millicores=2000, memory_bytes=512 << 20))
    backend.start(job(2, "true", gpu=2))
    detail = backend.inspect(1)["job"]
    assert (detail["NumNodes"].split("-")[0], detail["TimeLimit"]) == ("2", "00:03:00")
    assert "gpu:6" in detail.get("TresPerNode", ""), detail
    assert backend.inspect(2)["job"]["TimeLimit"] != "00:03:00"  # another project's job
    watcher.wait(1, S.COMPLETED, timeout=30)
    lines = sorted(backend.logs(1).splitlines())
    assert len(lines) == 2, lines
    found = [re.fullmatch(r"rank=(\d) of 2 on (n\d) master=(n\d):(\d+) gpus=([\d,]+)", line) for line in lines]
    assert all(found), lines
    assert [m.group(1) for m in found] == ["0", "1"]  # type: ignore[union-attr]
    assert len({m.group(2) for m in found}) == 2  # type: ignore[union-attr]
    assert {m.group(3) for m in found} == {found[0].group(2)}  # type: ignore[union-attr]  # rank 0's node
    assert all(len(m.group(5).split(",")) == 6 for m in found)  # type: ignore[union-attr]
    watcher.wait(2, S.COMPLETED)


def test_a_node_drained_mid_run_lets_its_job_finish_and_a_node_going_down_ends_its_job(make_slurm, slurm_cluster):
    backend = make_slurm(time_limit="10")
    watcher = Watcher(backend)
    wait_for(lambda: len(backend.capacity().nodes) == 4)
    backend.start(job(1, "sleep 3; echo finished"))
    watcher.wait(1, S.RUNNING)
    drained = backend.inspect(1)["job"]["BatchHost"]
    touched = [drained]
    try:
        slurm_cluster.run("scontrol", "update", f"nodename={drained}", "state=drain", "reason=corral-test")
        assert drained not in [n.name for n in backend.capacity().nodes]  # no new work for it
        done = watcher.wait(1, S.COMPLETED, timeout=20)  # what runs there finishes
        assert done.exit_code == 0 and backend.logs(1) == "finished\n"
        # A node that goes down under a running job: Slurm ends the job (NODE_FAIL) and,
        # batch jobs being requeued by default (JobRequeue=1), queues it again.
        backend.start(job(2, "sleep 60"))
        assert watcher.wait(2, S.RUNNING).reason.endswith(", time limit 10:00")  # Slurm's limit, as it says it
        lost = backend.inspect(2)["job"]["BatchHost"]
        touched.append(lost)
        slurm_cluster.run("scontrol", "update", f"nodename={lost}", "state=down", "reason=corral-test")
        job_id = backend._jobs[2].job_id
        requeued = watcher.wait(2, lambda o: o.status is not S.RUNNING, timeout=30)
        assert requeued.status is S.PENDING and requeued.reason.startswith("requeued by Slurm after it ran"), requeued
        detail = backend.inspect(2)["job"]
        assert (detail["JobId"], detail["Restarts"]) == (str(job_id), "1")  # the same job, not a second one
        assert [name for _, name, _ in slurm_cluster.jobs(f"{make_slurm.prefix}2")] == [f"{make_slurm.prefix}2"]
    finally:
        for node in touched:
            slurm_cluster.run("scontrol", "update", f"nodename={node}", "state=resume", check=False)
    backend.stop(2)
    watcher.wait(2, S.DELETED, timeout=20)
    wait_for(lambda: len(backend.capacity().nodes) == 4, timeout=60)


def test_a_workspace_on_a_node_listens_beyond_loopback_and_still_wants_its_token(make_slurm):
    # The built-in recipes bind 127.0.0.1 (right on a local cluster); on a compute node the
    # control plane's proxy connects from another host: the job binds 0.0.0.0 instead.
    backend = make_slurm()
    watcher = Watcher(backend)
    token = "service-token-of-workload-42"
    server, endpoint = build_launches(
        workload_id=42, project="proj", workload_type="workspace",
        spec={"type": "workspace", "name": "notebook", "project": "proj"},
        components=[ComponentRef(1, "server", cpu_millicores=1000, memory_bytes=1 << 30), ComponentRef(2, "endpoint")],
        work_root=backend.work.root, secret_env={"CORRAL_SERVICE_TOKEN": token})
    backend.start(server)
    backend.start(endpoint)
    running = watcher.wait(1, S.RUNNING, timeout=90)
    port = int(running.endpoint_url.rsplit(":", 1)[1].strip("/"))  # type: ignore[union-attr]
    outside = next(a for a in subprocess.run(["hostname", "-I"], capture_output=True, text=True,
                                             check=True).stdout.split() if "." in a and not a.startswith("127."))
    url = f"http://{outside}:{port}/api/status"  # as from another host of the cluster's network
    assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 200
    assert httpx.get(url, timeout=10).status_code == 403  # without the token: nothing
    backend.stop(1)
    watcher.wait(1, S.DELETED, timeout=30)


def test_the_running_tasks_of_a_job_array_are_discovered_each_with_what_it_holds(make_slurm, slurm_cluster):
    backend = make_slurm()
    name = f"array-{uuid.uuid4().hex[:6]}"
    first = slurm_cluster.sbatch("-J", name, "--array=0-1", "--account=vision", "--gres=gpu:1", "-c", "2",
                                 "--mem=200M", "-o", "/dev/null")
    try:
        found = wait_for(lambda: len(tasks := [d for d in backend.discover() if d.command == name]) == 2 and tasks)
        holds = [(d.project, d.gpu, d.cpu_millicores, d.memory_bytes) for d in found]  # type: ignore[union-attr]
        assert holds == [("vision", 1, 2000, 200 << 20)] * 2
        names = sorted((d.native_name for d in found),  # type: ignore[union-attr]
                       key=lambda n: int(n.rsplit("-", 1)[1]))
        assert len(set(names)) == 2 and names[0] == f"slurm-job-{first}", names  # each task: a job id of its own
    finally:
        slurm_cluster.scancel(first)
