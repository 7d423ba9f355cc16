"""A Slurm cluster driven end to end: `corral serve`, `corral agent --backend slurm` as a
process on this "login node", real Slurm daemons (scripts/slurm-test-cluster). Workloads
submitted through the API become Slurm jobs of the project's user, their statuses and
output come back, delete cancels, and a job submitted with sbatch outside Corral counts
against its project's quota with everything it holds."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.backends.identity import user_name_for
from tests.conftest import work_root_for
from tests.e2e.conftest import CORRAL_BIN, LiveServer, clean_env, make_database, start_server, stop_server
from tests.integration.backends.slurm_support import SCRIPT, STATE, SlurmCluster, slurm_cluster  # noqa: F401


@dataclass
class SlurmWorld:
    server: LiveServer
    client: httpx.Client
    slurm: SlurmCluster
    prefix: str
    foreign_job: int
    agent_log: Path


@pytest.fixture(scope="module")
def world(slurm_cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmWorld]:  # noqa: F811
    root = tmp_path_factory.mktemp("slurm-e2e")
    prefix = f"e2e{uuid.uuid4().hex[:6]}-c"
    with ExitStack() as stack:
        # Unhealthy after 5 s without a heartbeat (the agent sends one every 0.5 s): the outage test sees it.
        server = start_server(make_database("sqlite", root / "data", stack), root / "server.log",
                              env_extra={"CORRAL_CLUSTER_UNHEALTHY_AFTER_S": "5"})
        stack.callback(stop_server, server)
        client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token}"},
                              timeout=30)
        created = client.post("/api/v1/clusters", json={
            "name": "hpc", "kind": "slurm", "capacity": {"gpu": 32, "cpu": 32, "memory": "15Gi"}})
        assert created.status_code == 201, created.text
        token = root / "agent-token"
        token.write_text(created.json()["agent_token"])
        token.chmod(0o600)
        quota = client.put("/api/v1/projects/default/quotas/hpc", json={
            "guaranteed": {"gpu": 8, "cpu": 16, "memory": "8Gi"}, "limit": "unbounded"})
        assert quota.status_code == 200, quota.text
        # Someone's own sbatch job, running before the agent starts (found on its first pass).
        foreign = slurm_cluster.sbatch("-J", f"theirs-{prefix}", "--account=default", "--gres=gpu:1", "-c", "2",
                                       "--mem=300M", "-o", "/dev/null")
        stack.callback(slurm_cluster.scancel, foreign)
        log = root / "agent.log"
        with log.open("wb") as out:
            agent = subprocess.Popen(
                [str(CORRAL_BIN), "agent", "--backend", "slurm", "--server", server.url, "--token-file", str(token),
                 "--state-dir", str(root / "agent"), "--workload-root", str(work_root_for(root / "agent")),
                 "--slurm-job-prefix", prefix, "--slurm-partition", "gpu", "--poll", "0.1",
                 "--discover-interval", "0.5", "--heartbeat-interval", "0.5",
                 "--slurm-project-sbatch-options", "default=--time=30;other=--time=5"],
                env=clean_env({**slurm_cluster.env, "CORRAL_USAGE_INTERVAL_S": "1"}), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        stack.callback(_stop, agent)
        stack.callback(lambda: slurm_cluster.scancel(*(i for i, _, _ in slurm_cluster.jobs(prefix))))
        deadline = time.monotonic() + 30
        while client.get("/api/v1/clusters/hpc").json()["status"] != "healthy":
            assert agent.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield SlurmWorld(server, client, slurm_cluster, prefix, foreign, log)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def _submit(client: httpx.Client, **body: Any) -> int:
    spec = {"type": "custom", "project": "default", "cluster": "hpc",
            "resources": {"cpu": 1, "memory": "256Mi"}, **body}
    response = client.post("/api/v1/workloads", json=spec)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _watch(world: SlurmWorld, wid: int, until: set[str], timeout: float = 30.0) -> tuple[dict, list[str]]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        detail = world.client.get(f"/api/v1/workloads/{wid}").json()
        if not seen or seen[-1] != detail["status"]:
            seen.append(detail["status"])
        if detail["status"] in until:
            return detail, seen
        assert time.monotonic() < deadline, f"{detail['status']} ({detail['status_reason']})\n" + \
            world.agent_log.read_text()[-3000:]
        time.sleep(0.05)


def test_the_cluster_reports_slurms_nodes(world):
    cluster = world.client.get("/api/v1/clusters/hpc").json()
    assert cluster["kind"] == "slurm" and len(cluster["nodes"]) == 4
    assert cluster["capacity"]["gpu"] == 32 and cluster["capacity"]["cpu"] == 32
    assert "own" in cluster["isolation"]


def test_a_workload_runs_as_a_slurm_job_of_the_projects_user(world):
    wid = _submit(world.client, name="on-slurm", resources={"gpu": 1, "cpu": 1, "memory": "256Mi"},
                  command='echo "on $SLURMD_NODENAME as $(id -un) with gpu $CUDA_VISIBLE_DEVICES"; sleep 1')
    detail, seen = _watch(world, wid, {"Complete", "Failed"})
    assert detail["status"] == "Complete" and "Running" in seen, (detail, seen)
    text = world.client.get(f"/api/v1/workloads/{wid}/logs").text
    assert re.fullmatch(rf"on n\d as {user_name_for('default')} with gpu \d\n", text), text  # one GPU of the node
    [(job_id, _, state)] = [j for j in world.slurm.jobs(world.prefix)
                            if j[1] == f"{world.prefix}{detail['components'][0]['id']}"]
    assert state == "COMPLETED"
    # The project's own sbatch options (--slurm-project-sbatch-options) reached its job.
    assert "TimeLimit=00:30:00" in world.slurm.run("scontrol", "show", "job", "-o", str(job_id))


def test_a_slurm_jobs_memory_and_cpu_reach_its_charts(world):
    # Holds 200 MiB and burns a core; Slurm gathers its use every 5 s (jobacct_gather/linux).
    burn = ("python3 -c 'hold = bytearray(200 * 2**20)\nfor i in range(0, len(hold), 4096): hold[i] = 1\n"
            "while True: pass'")
    wid = _submit(world.client, name="burns", command=burn, resources={"cpu": 1, "memory": "1Gi"})
    _watch(world, wid, {"Running"})
    deadline = time.monotonic() + 30
    while True:
        [comp] = world.client.get(f"/api/v1/workloads/{wid}/usage").json()["components"]
        cpu = [c for c in comp["cpu"] if c is not None]
        if comp["memory"] and comp["memory"][-1] >= 200 << 20 and cpu and max(cpu) >= 0.3:  # cores
            break
        assert time.monotonic() < deadline, f"no sample with its memory and CPU in 30 s: {comp}"
        time.sleep(0.5)
    assert world.client.delete(f"/api/v1/workloads/{wid}").status_code == 202
    _watch(world, wid, {"Deleted"})


def test_a_failing_workload_fails_with_its_exit_code(world):
    wid = _submit(world.client, name="fails", command="echo trouble >&2; exit 4")
    detail, _ = _watch(world, wid, {"Complete", "Failed"})
    assert detail["status"] == "Failed" and "exit code 4" in detail["status_reason"], detail
    assert "trouble" in world.client.get(f"/api/v1/workloads/{wid}/logs").text


def test_deleting_a_running_workload_cancels_its_job(world):
    wid = _submit(world.client, name="long", command="sleep 120")
    detail, _ = _watch(world, wid, {"Running"})
    assert world.client.delete(f"/api/v1/workloads/{wid}").status_code == 202
    detail, _ = _watch(world, wid, {"Deleted", "DeleteFailed"})
    assert detail["status"] == "Deleted"
    name = f"{world.prefix}{detail['components'][0]['id']}"
    assert [state for _, n, state in world.slurm.jobs(world.prefix) if n == name] == ["CANCELLED"]


def test_a_job_submitted_with_sbatch_counts_against_its_projects_quota(world):
    deadline = time.monotonic() + 20
    while True:
        found = [w for w in world.client.get("/api/v1/workloads", params={"project": "default"}).json()["items"]
                 if w["name"] == f"found slurm-job-{world.foreign_job}"]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert found, world.agent_log.read_text()[-3000:]
    before = world.client.get("/api/v1/projects/default/quotas/hpc").json()["used"]
    assert before["gpu"] >= 1 and before["cpu"] >= 2 and before["memory"] >= 300 << 20, before
    # It ends: the workload is over and what it held is released.
    world.slurm.scancel(world.foreign_job)
    detail, _ = _watch(world, found[0]["id"], {"Complete", "Failed", "Terminated"})
    assert detail["status"] == "Complete", detail
    after = world.client.get("/api/v1/projects/default/quotas/hpc").json()["used"]
    assert (before["gpu"] - after["gpu"], before["cpu"] - after["cpu"], before["memory"] - after["memory"]) == (
        1, 2, 300 << 20), (before, after)


def _cluster_status(world: SlurmWorld, wanted: str, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while (status := world.client.get("/api/v1/clusters/hpc").json()["status"]) != wanted:
        assert time.monotonic() < deadline, (status, world.agent_log.read_text()[-2000:])
        time.sleep(0.2)


def test_while_slurmctld_is_down_the_cluster_is_unhealthy_workloads_keep_their_status_and_nothing_doubles(world):
    wid = _submit(world.client, name="outlives", command="sleep 6; echo still here")
    _watch(world, wid, {"Running"})
    pid = int((STATE / "slurmctld.pid").read_text())
    os.kill(pid, signal.SIGTERM)  # slurmctld stopped for real
    try:
        # Submitted as the controller goes (the cluster still looks healthy): admitted or
        # not, it must run once Slurm is back, and only once.
        later = _submit(world.client, name="meanwhile", command="echo after the outage")
        deadline = time.monotonic() + 40
        while True:
            detail = world.client.get(f"/api/v1/workloads/{wid}").json()
            reason = detail["components"][0]["reason"] or ""
            if "Slurm controller unreachable since" in reason:
                break
            assert time.monotonic() < deadline, (detail, world.agent_log.read_text()[-2000:])
            time.sleep(0.2)
        assert detail["status"] == "Running"  # its last known status, saying why it is not fresher
        _cluster_status(world, "unhealthy")  # no heartbeat while Slurm does not answer
        assert world.client.get(f"/api/v1/workloads/{later}").json()["status"] in ("Pending", "Added")
    finally:
        subprocess.run([str(SCRIPT), "start"], env=clean_env(world.slurm.env), check=True, capture_output=True,
                       timeout=120)
    _cluster_status(world, "healthy")
    detail, _ = _watch(world, wid, {"Complete", "Failed"}, timeout=60)
    assert detail["status"] == "Complete", detail
    assert world.client.get(f"/api/v1/workloads/{wid}/logs").text == "still here\n"
    after, _ = _watch(world, later, {"Complete", "Failed"}, timeout=60)
    assert after["status"] == "Complete", after
    assert world.client.get(f"/api/v1/workloads/{later}/logs").text == "after the outage\n"
    names = [n for _, n, _ in world.slurm.jobs(world.prefix)]
    for item in (detail, after):
        assert names.count(f"{world.prefix}{item['components'][0]['id']}") == 1, names
