"""Admission checks a request against the nodes the agent reports, not only the cluster's
total (``domain.node_fit``): a 2-node job on a cluster whose agent reports one usable node
waits with a reason (a drained node is not reported), and is admitted once the node is back."""

from __future__ import annotations

from corral.services.admission import Admitter
from tests.integration.conftest import submit


def _nodes(api, token, count):
    node = {"gpu": 8, "cpu": 64, "memory": "512Gi", "ephemeral_storage": "5Ti"}
    body = {"capacity": {k: (v * count if k == "gpu" or k == "cpu" else v) for k, v in node.items()},
            "nodes": [{"name": f"n{i}", "capacity": node} for i in range(count)]}
    if count != 2:
        body["capacity"] = node  # one node: the total is that node
    r = api.as_token(token).post("/api/v1/agent/heartbeat", json=body)
    assert r.status_code == 200, r.text


def test_a_multi_node_job_waits_until_the_cluster_reports_enough_nodes(world):
    api = world.api
    _nodes(api, world.agent_token, 1)  # the other node drained
    admitter = Admitter(api.engine)
    job = submit(world.alice, type="training", name="two-nodes", dataset="d", nodes=2,
                 resources={"gpu": 4, "cpu": 8, "memory": "32Gi"})
    assert job.status_code == 201, job.text
    wid = job.json()["id"]
    small = submit(world.bob, project="speech", name="small", resources={"gpu": 1}).json()["id"]
    admitter.run_pass()
    detail = world.alice.get(f"/api/v1/workloads/{wid}").json()
    assert detail["admitted_at"] is None
    assert detail["status_reason"].startswith("needs 2 nodes with gpu 4, cpu 8, memory 32Gi each; "
                                              "the cluster has 1 such (of 1 node)"), detail["status_reason"]
    assert world.bob.get(f"/api/v1/workloads/{small}").json()["admitted_at"] is not None

    _nodes(api, world.agent_token, 2)  # back: the same scheduler notices (a capacity event)
    admitter.run_pass()
    detail = world.alice.get(f"/api/v1/workloads/{wid}").json()
    assert detail["admitted_at"] is not None, detail["status_reason"]


def test_other_nodes_with_the_same_total_are_news_to_the_scheduler(world):
    """One 16-GPU node replaced by four of 4 (the total unchanged): what fits on a node
    changed, so the heartbeat writes a capacity event and the scheduler reloads."""
    api = world.api
    agent = api.as_token(world.agent_token)
    total = {"gpu": 16, "cpu": 128, "memory": "1Ti", "ephemeral_storage": "10Ti"}
    quarter = {"gpu": 4, "cpu": 32, "memory": "256Gi", "ephemeral_storage": "2560Gi"}
    assert agent.post("/api/v1/agent/heartbeat", json={"capacity": total, "nodes": [
        {"name": "big", "capacity": total}]}).status_code == 200
    admitter = Admitter(api.engine)
    admitter.run_pass()
    job = submit(world.alice, type="training", name="on-one-node", dataset="d", resources={"gpu": 8})
    assert job.status_code == 201, job.text
    wid = job.json()["id"]
    assert agent.post("/api/v1/agent/heartbeat", json={"capacity": total, "nodes": [
        {"name": f"n{i}", "capacity": quarter} for i in range(4)]}).status_code == 200
    admitter.run_pass()
    detail = world.alice.get(f"/api/v1/workloads/{wid}").json()
    assert detail["admitted_at"] is None
    assert detail["status_reason"].startswith(
        "needs gpu 8, cpu 1, memory 2Gi on one node; no node of the cluster has that much (it has 4 nodes)"
    ), detail["status_reason"]
