"""Reasons and queue positions are facts of now (quotas.md): when a queue changes, the
reasons of those still waiting in it say their new place in the same pass, with the
scheduler as it runs (one Admitter, incremental passes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from corral.services.admission import Admitter
from tests.integration.conftest import submit


def _reason(client, wid):
    return client.get(f"/api/v1/workloads/{wid}").json()["status_reason"]


def _settle(admitter):
    """What the scheduler loop does after a change: a pass, then more while it has work of
    its own (but no timers: nothing here waits for the idle refresh)."""
    admitter.run_pass()
    for _ in range(20):
        if not (admitter.reasons_to_write or admitter.new or admitter.dirty):
            return
        admitter.run_pass()


def _complete(world, wid):
    agent = world.api.as_token(world.agent_token)
    comps = world.admin.get(f"/api/v1/workloads/{wid}").json()["components"]
    observed = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    assert agent.post("/api/v1/agent/component-statuses", json={"updates": [
        {"component_id": c["id"], "status": "Completed", "observed_at": observed} for c in comps]}).status_code == 200


def test_positions_follow_the_queue_as_it_drains(world):
    admitter = Admitter(world.api.engine)
    running = submit(world.alice, name="running", resources={"gpu": 8}).json()["id"]
    _settle(admitter)
    a, b, c = (submit(world.alice, name=n, resources={"gpu": 4}).json()["id"] for n in ("a", "b", "c"))
    _settle(admitter)
    assert [_reason(world.alice, w).rsplit("; ", 1)[1] for w in (a, b, c)] == [
        "position 1 of 3", "position 2 of 3", "position 3 of 3"]

    assert world.alice.delete(f"/api/v1/workloads/{a}").status_code == 202  # leaves the queue
    _settle(admitter)
    assert [_reason(world.alice, w).rsplit("; ", 1)[1] for w in (b, c)] == ["position 1 of 2", "position 2 of 2"]

    _complete(world, running)  # b and c are admitted: nothing waits
    _settle(admitter)
    d = submit(world.alice, name="d", resources={"gpu": 4}).json()["id"]
    _settle(admitter)
    assert _reason(world.alice, d).endswith("; position 1 of 1")


def test_a_higher_priority_newcomer_moves_the_others_back(world):
    assert world.admin.patch("/api/v1/projects/vision", json={"preemption_policy": "never"}).status_code == 200
    admitter = Admitter(world.api.engine)
    submit(world.alice, name="running", resources={"gpu": 8})
    _settle(admitter)
    a, b = (submit(world.alice, name=n, resources={"gpu": 4}).json()["id"] for n in ("a", "b"))
    _settle(admitter)
    urgent = submit(world.alice, name="urgent", resources={"gpu": 4}, priority="high").json()["id"]
    _settle(admitter)
    assert _reason(world.alice, urgent).endswith("; position 1 of 3")
    assert [_reason(world.alice, w).rsplit("; ", 1)[1] for w in (a, b)] == ["position 2 of 3", "position 3 of 3"]
