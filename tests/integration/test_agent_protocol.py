"""The agent protocol over the real API: work since a cursor, found workloads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from corral.services.admission import run_pass
from tests.integration.conftest import submit


def test_work_names_what_to_run_then_what_to_stop(world):
    agent = world.api.as_token(world.agent_token)
    first = agent.get("/api/v1/agent/work").json()
    assert first["full"] is True and first["items"] == []
    wid = submit(world.alice, name="job", resources={"gpu": 2}).json()["id"]
    nothing = agent.get("/api/v1/agent/work", params={"after": first["cursor"]}).json()
    assert nothing["items"] == []  # submitted, not admitted: nothing for the cluster yet
    run_pass(world.api.engine)
    work = agent.get("/api/v1/agent/work", params={"after": nothing["cursor"]}).json()
    [item] = work["items"]
    assert (item["workload_id"], item["action"], item["project"], item["type"]) == (wid, "run", "vision", "custom")
    assert [c["gpu"] for c in item["components"]] == [2] and item["env"] == {}
    # Nothing new since (on PostgreSQL the last events are read again, late commits being
    # possible: the same answer may repeat; the agent applies it idempotently).
    assert all(i == item for i in agent.get("/api/v1/agent/work", params={"after": work["cursor"]}).json()["items"])
    comp = item["components"][0]["id"]
    observed = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    assert agent.post("/api/v1/agent/component-statuses", json={"updates": [
        {"component_id": comp, "status": "Running", "observed_at": observed,
         "endpoint_url": "http://127.0.0.1:9999/"}]}).status_code == 200
    detail = world.alice.get(f"/api/v1/workloads/{wid}").json()
    # Shown on the workload's own origin, never where it listens.
    assert detail["status"] == "Running" and detail["endpoints"] == {"job": f"http://w{wid}.localhost:8000/"}
    assert world.alice.delete(f"/api/v1/workloads/{wid}").status_code == 202
    [stop] = agent.get("/api/v1/agent/work", params={"after": work["cursor"]}).json()["items"]
    assert (stop["action"], stop["stop_as"], stop["component_ids"]) == ("stop", "Deleted", [comp])
    full = agent.get("/api/v1/agent/work").json()
    assert [(i["workload_id"], i["action"]) for i in full["items"]] == [(wid, "stop")]


def test_workloads_found_on_the_cluster_become_custom_workloads_that_count(world):
    agent = world.api.as_token(world.agent_token)
    found = {"native_name": "pid-4242", "kind": "process", "command": "python train.py", "gpu": 3,
             "cpu": 4000, "memory": 8 << 30, "ephemeral_storage": 20 << 30, "project": "vision"}
    answer = agent.post("/api/v1/agent/found", json={"items": [found]}).json()["items"]
    assert answer[0]["workload_id"] and answer[0]["component_id"]
    again = agent.post("/api/v1/agent/found", json={"items": [found]}).json()["items"]
    assert again == answer  # recorded once
    detail = world.admin.get(f"/api/v1/workloads/{answer[0]['workload_id']}").json()
    assert (detail["type"], detail["status"], detail["project"], detail["preemptible"]) == (
        "custom", "Running", "vision", False)
    assert any(e["kind"] == "discovered" for e in detail["events"])
    quota = world.alice.get("/api/v1/projects/vision/quotas/gpu-a").json()
    # It counts against the project's quota, with all it holds.
    used = quota["used"]
    assert (used["gpu"], used["cpu"], used["memory"], used["ephemeral_storage"]) == (3, 4, 8 << 30, 20 << 30)
    assert detail["resources"]["cpu"] == 4 and detail["resources"]["memory"] == 8 << 30
    unknown = agent.post("/api/v1/agent/found", json={"items": [{"native_name": "pid-7", "project": "nope"}]})
    assert unknown.json()["items"][0]["workload_id"] is None  # no such project: not recorded
    # Nothing of it is handed back to the agent to run.
    assert all(i["workload_id"] != answer[0]["workload_id"] for i in agent.get("/api/v1/agent/work").json()["items"])
    # Gone from the cluster: the agent says so, and the usage is released.
    observed = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    agent.post("/api/v1/agent/component-statuses", json={"updates": [
        {"component_id": answer[0]["component_id"], "status": "Completed", "observed_at": observed}]})
    used = world.alice.get("/api/v1/projects/vision/quotas/gpu-a").json()["used"]
    assert (used["gpu"], used["cpu"], used["memory"], used["ephemeral_storage"]) == (0, 0, 0, 0)
