"""A time limit end to end: submitted through the API to `corral serve` with its built-in
local cluster agent, the real command is stopped at its limit and the workload is Failed
saying so; a training job asking for nodes is Failed on the one-host cluster, saying why."""

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


def test_a_job_spanning_nodes_fails_on_the_local_cluster_saying_why(live_server):
    client = _client(live_server)
    wid = _submit(client, type="training", name="wide", dataset="d", command="true", nodes=2)
    detail, _ = _watch(client, wid, {"Complete", "Failed"})
    assert detail["status"] == "Failed"
    assert "asks for 2 nodes; the local cluster is one host" in detail["status_reason"], detail["status_reason"]
