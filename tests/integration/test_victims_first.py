"""Victims first (quotas.md): a workload admitted by preempting others is not handed to its
cluster's agent until the agent reports every victim's components gone, so the cluster never
runs both at once. Through the real agent protocol, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from corral.services.admission import run_pass
from tests.integration.conftest import submit


def _detail(client, wid):
    return client.get(f"/api/v1/workloads/{wid}").json()


def _report(agent, components, status, *, removed=False, offset=1.0):
    observed = (datetime.now(UTC) + timedelta(seconds=offset)).isoformat()
    body = {"updates": [{"component_id": c, "status": status, "observed_at": observed, "removed": removed}
                        for c in components]}
    response = agent.post("/api/v1/agent/component-statuses", json=body)
    assert response.status_code == 200, response.text


def _work(agent, after):
    work = agent.get("/api/v1/agent/work", params={"after": after} if after is not None else {}).json()
    return work["cursor"], {(i["workload_id"], i["action"]) for i in work["items"]}


def _borrowing_world(world):
    """vision borrows 4 GPUs of speech's guarantee, and those 12 GPUs run on the cluster."""
    world.admin.put("/api/v1/projects/vision/quotas/gpu-a",
                    json={"guaranteed": {"gpu": 8, "cpu": 64, "memory": "512Gi"}, "limit": "unbounded"})
    agent = world.api.as_token(world.agent_token)
    cursor, _ = _work(agent, None)
    a = submit(world.alice, name="a", resources={"gpu": 6}).json()["id"]
    b = submit(world.alice, name="b", resources={"gpu": 6}).json()["id"]
    assert run_pass(world.api.engine).admitted == 2
    cursor, items = _work(agent, cursor)
    assert items == {(a, "run"), (b, "run")}
    comps = {w: [c["id"] for c in _detail(world.admin, w)["components"]] for w in (a, b)}
    for w in (a, b):
        _report(agent, comps[w], "Running")
    return agent, cursor, comps


def test_the_preemptor_starts_only_once_its_victims_are_gone(world):
    agent, cursor, comps = _borrowing_world(world)
    owner = submit(world.bob, name="owner", project="speech", resources={"gpu": 8}).json()["id"]
    result = run_pass(world.api.engine)
    assert (result.preempted, result.admitted) == (1, 1)
    [victim] = [w for w in comps if _detail(world.admin, w)["admitted_at"] is None]

    # The agent is told to stop the victim, and nothing about the preemptor yet.
    cursor, items = _work(agent, cursor)
    assert (victim, "stop") in items and all(w != owner for w, _ in items)
    held = _detail(world.bob, owner)
    assert held["status"] == "Pending" and held["admitted_at"] is not None
    assert held["status_reason"] == (f"admitted to cluster gpu-a; starts once the workloads it preempted have "
                                     f"stopped (workload {victim})")
    # The victim still runs until its agent has removed it; it says who preempted it.
    shown = _detail(world.alice, victim)
    assert shown["status"] == "Running"
    assert [e["message"] for e in shown["events"] if e["kind"] == "preempted"] == [
        f"preempted by workload {owner} of project speech to reclaim its guaranteed quota"]
    # A full resync does not run it either.
    assert all(w != owner for w, _ in _work(agent, None)[1])

    _report(agent, comps[victim], "Pending", removed=True, offset=2)
    cursor, items = _work(agent, cursor)
    assert (owner, "run") in items
    released = _detail(world.bob, owner)
    assert any(e["kind"] == "victims_gone" for e in released["events"])
    assert released["status_reason"].startswith("admitted to cluster gpu-a; the workloads it preempted are gone")
    back = _detail(world.alice, victim)
    assert back["status"] == "Pending"
    # Back in the queue, its reason still says who preempted it (the agent only knows it was removed).
    assert back["status_reason"] == (f"preempted by workload {owner} of project speech to reclaim its guaranteed "
                                     "quota; removed from the cluster, waits in the queue to be admitted again")


def test_a_victim_deleted_while_it_stops_releases_the_preemptor_when_gone(world):
    agent, cursor, comps = _borrowing_world(world)
    owner = submit(world.bob, name="owner", project="speech", resources={"gpu": 8}).json()["id"]
    assert run_pass(world.api.engine).preempted == 1
    [victim] = [w for w in comps if _detail(world.admin, w)["admitted_at"] is None]
    assert world.alice.delete(f"/api/v1/workloads/{victim}").status_code == 202
    cursor, items = _work(agent, cursor)
    assert all(w != owner for w, _ in items)  # deleting is not being gone: it still runs
    _report(agent, comps[victim], "Deleted", offset=2)
    assert (owner, "run") in _work(agent, cursor)[1]


def test_a_victim_never_started_on_the_cluster_holds_nothing_back(world):
    world.admin.put("/api/v1/projects/vision/quotas/gpu-a",
                    json={"guaranteed": {"gpu": 8, "cpu": 64, "memory": "512Gi"}, "limit": "unbounded"})
    agent = world.api.as_token(world.agent_token)
    cursor, _ = _work(agent, None)
    submit(world.alice, name="big", resources={"gpu": 12})
    assert run_pass(world.api.engine).admitted == 1  # admitted, never reported by the agent
    owner = submit(world.bob, name="owner", project="speech", resources={"gpu": 8}).json()["id"]
    assert run_pass(world.api.engine).preempted == 1
    assert (owner, "run") in _work(agent, cursor)[1]


def test_a_victim_admitted_again_loses_its_mark(world):
    """A victim that never ran on the cluster is Pending at once (no report clears its mark):
    admitted again, it is unmarked, and holds nothing back."""
    from sqlalchemy import select

    from corral.db.tables import workloads
    from corral.services.preemption import held

    world.admin.put("/api/v1/projects/vision/quotas/gpu-a",
                    json={"guaranteed": {"gpu": 8, "cpu": 64, "memory": "512Gi"}, "limit": "unbounded"})
    victim = submit(world.alice, name="big", resources={"gpu": 12}).json()["id"]
    assert run_pass(world.api.engine).admitted == 1
    owner = submit(world.bob, name="owner", project="speech", resources={"gpu": 8}).json()["id"]
    assert run_pass(world.api.engine).preempted == 1
    with world.api.engine.connect() as conn:
        assert conn.execute(select(workloads.c.preempted_for).where(workloads.c.id == victim)).scalar_one() == owner
    assert world.bob.delete(f"/api/v1/workloads/{owner}").status_code == 202  # never placed: Deleted at once
    assert run_pass(world.api.engine).admitted == 1
    assert _detail(world.alice, victim)["admitted_at"] is not None
    with world.api.engine.connect() as conn:
        assert conn.execute(select(workloads.c.preempted_for).where(workloads.c.id == victim)).scalar_one() is None
        assert held(conn, [owner]) == set()
