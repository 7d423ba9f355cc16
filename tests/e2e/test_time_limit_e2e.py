"""A time limit end to end: submitted through the API to `corral serve` with its built-in
local cluster agent, the real command is stopped at its limit and the workload is Failed
saying so; a training job asking for nodes waits on the one-host cluster, saying why."""

from __future__ import annotations

import time

from tests.e2e.test_agent_e2e import _client, _processes_with, _submit, _watch


def test_a_workload_past_its_time_limit_is_stopped_and_failed(live_server):
    client = _client(live_server)
    marker = f"600.{time.time_ns() % 10**9:09d}"  # an argument of its own, to find its process
    started = time.monotonic()
    wid = _submit(client, name="limited", command=f"exec sleep {marker}", time_limit="2s")
    _watch(client, wid, {"Running"})
    assert _processes_with(marker)
    detail, seen = _watch(client, wid, {"Complete", "Failed"}, timeout=30)
    assert detail["status"] == "Failed" and "Running" in seen, (detail, seen)
    assert detail["status_reason"].startswith("time limit of 2s reached"), detail["status_reason"]
    assert detail["time_limit"] == "2s" and time.monotonic() - started >= 2
    assert not _processes_with(marker)


def test_a_job_spanning_nodes_waits_on_the_one_host_cluster_saying_why(live_server):
    """The local agent reports its one node: admission keeps a 2-node job waiting, never
    admitted (the backend would refuse it at start), and says why."""
    client = _client(live_server)
    wid = _submit(client, type="training", name="wide", dataset="d", command="true", nodes=2)
    deadline = time.monotonic() + 30
    while True:
        detail = client.get(f"/api/v1/workloads/{wid}").json()
        if detail["status_reason"].startswith("needs 2 nodes"):
            break
        assert time.monotonic() < deadline, detail
        time.sleep(0.05)
    assert detail["status"] == "Pending" and detail["admitted_at"] is None
    assert "the cluster has 1 such (of 1 node)" in detail["status_reason"], detail["status_reason"]
