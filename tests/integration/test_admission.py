"""Admission passes over the real database: why a workload waits, and when it is admitted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from corral.services.admission import Admitter, run_pass
from tests.integration.conftest import submit


def _detail(client, wid):
    return client.get(f"/api/v1/workloads/{wid}").json()


def _report(world, wid, status, offset=1.0):
    agent = world.api.as_token(world.agent_token)
    comps = _detail(world.admin, wid)["components"]
    observed = (datetime.now(UTC) + timedelta(seconds=offset)).isoformat()
    response = agent.post("/api/v1/agent/component-statuses", json={
        "updates": [{"component_id": c["id"], "status": status, "observed_at": observed} for c in comps]})
    assert response.status_code == 200


def test_over_quota_waits_with_reason_and_position_then_is_admitted_when_capacity_frees(world):
    first = submit(world.alice, name="first", resources={"gpu": 6}).json()["id"]
    second = submit(world.alice, name="second", resources={"gpu": 4}).json()["id"]
    third = submit(world.alice, name="third", resources={"gpu": 3}).json()["id"]
    result = run_pass(world.api.engine)
    assert (result.admitted, result.waiting) == (1, 2)

    assert _detail(world.alice, first)["admitted_at"] is not None
    waiting = _detail(world.alice, second)
    assert waiting["status"] == "Pending"
    assert waiting["status_reason"] == ("waiting for quota: gpu 6/8 in use in project vision (limit 8), 4 requested; "
                                        "position 1 of 2")
    assert [e["message"] for e in waiting["events"] if e["kind"] == "waiting"] == [waiting["status_reason"]]
    assert waiting["queue_position"] == {"position": 1, "of": 2}
    assert _detail(world.alice, third)["queue_position"] == {"position": 2, "of": 2}
    quota = world.alice.get("/api/v1/projects/vision/quotas/gpu-a").json()
    assert (quota["used"]["gpu"], quota["available"]["gpu"], quota["queued"]) == (6, 2, 2)

    _report(world, first, "Running")
    _report(world, first, "Completed", offset=2)
    assert _detail(world.alice, first)["status"] == "Complete"
    assert world.alice.get("/api/v1/projects/vision/quotas/gpu-a").json()["used"]["gpu"] == 0

    assert run_pass(world.api.engine).admitted == 2  # 4 + 3 GPUs fit the 8 now free
    for wid in (second, third):
        detail = _detail(world.alice, wid)
        assert detail["admitted_at"] is not None and detail["queue_position"] is None
        assert any(e["kind"] == "admitted" for e in detail["events"])
    quota = world.alice.get("/api/v1/projects/vision/quotas/gpu-a").json()
    assert (quota["used"]["gpu"], quota["queued"]) == (7, 0)


def test_reclaim_preempts_the_borrower_and_requeues_it(world):
    world.admin.put("/api/v1/projects/vision/quotas/gpu-a",
                    json={"guaranteed": {"gpu": 8, "cpu": 64, "memory": "512Gi"}, "limit": "unbounded"})
    borrower = submit(world.alice, name="borrower", resources={"gpu": 12}).json()["id"]
    assert run_pass(world.api.engine).admitted == 1
    assert world.alice.get("/api/v1/projects/vision/quotas/gpu-a").json()["borrowed"]["gpu"] == 4

    owner = submit(world.bob, name="owner", project="speech", resources={"gpu": 8}).json()["id"]
    result = run_pass(world.api.engine)
    assert (result.preempted, result.admitted) == (1, 1)
    requeued = _detail(world.alice, borrower)
    assert requeued["admitted_at"] is None and requeued["status"] == "Pending"
    assert requeued["events"][-1]["kind"] == "preempted"
    assert requeued["events"][-1]["message"] == (f"preempted by workload {owner} of project speech to reclaim its "
                                                 "guaranteed quota")
    assert _detail(world.bob, owner)["admitted_at"] is not None


def test_a_later_submission_learns_its_place_without_a_full_pass(world):
    admitter = Admitter(world.api.engine)
    for name, gpu in (("first", 6), ("second", 4), ("third", 3)):
        submit(world.alice, name=name, resources={"gpu": gpu})
    assert admitter.run_pass().admitted == 1
    fourth = submit(world.alice, name="fourth", resources={"gpu": 5}).json()["id"]
    result = admitter.run_pass()
    # decided alone, with the head of its queue (which could block it), not in a full pass
    assert (result.admitted, result.waiting, result.full_clusters) == (0, 2, 0)
    detail = _detail(world.alice, fourth)
    assert detail["status_reason"] == ("waiting for quota: gpu 6/8 in use in project vision (limit 8), 5 requested; "
                                       "position 3 of 3")
    assert detail["queue_position"] == {"position": 3, "of": 3}
    assert [e["kind"] for e in detail["events"]] == ["submitted", "waiting"]


def test_a_newcomer_admitted_while_older_reasons_wait_for_the_budget(world):
    """Regression (issue 13): a newcomers-only pass writes only the newcomers' reasons; when
    every newcomer was admitted and the backlog holds older reasons, that batch is empty, and
    the pass must neither fail (SQLite: "A value is required for bind parameter") nor reload."""
    admitter = Admitter(world.api.engine, reason_budget=1)
    ids = [submit(world.alice, name=name, resources={"gpu": gpu}).json()["id"]
           for name, gpu in (("first", 6), ("second", 4), ("third", 3))]
    result = admitter.run_pass()
    assert (result.admitted, result.waiting, result.reasons_left) == (1, 2, 1)

    newcomer = submit(world.bob, name="newcomer", project="speech", resources={"gpu": 1}).json()["id"]
    result = admitter.run_pass()
    assert (result.admitted, result.full_clusters, result.reasons_left) == (1, 0, 1)
    assert admitter.loaded  # the pass committed: no rollback, no reload
    assert _detail(world.bob, newcomer)["admitted_at"] is not None

    result = admitter.run_pass()  # the backlog's turn
    assert (result.admitted, result.reasons_left) == (0, 0)
    assert [_detail(world.alice, wid)["status_reason"].rsplit("; ", 1)[1] for wid in ids[1:]] == [
        "position 1 of 2", "position 2 of 2"]


def test_the_reason_budget_shrinks_to_what_a_short_pass_can_write(world):
    """A backlog of changed reasons is written a budget per pass, and the budget is what
    fits in a short pass at the rate reasons were last written: a submission arriving
    meanwhile waits for that pass only (issue 13: PostgreSQL's admission latency)."""
    admitter = Admitter(world.api.engine, reason_budget=500)
    assert submit(world.alice, name="big", resources={"gpu": 8}).status_code == 201
    for i in range(110):
        assert submit(world.alice, name=f"w{i}", resources={"gpu": 1}).status_code == 201
    result = admitter.run_pass()
    assert (result.admitted, result.waiting, result.reasons_left) == (1, 110, 0)  # 110 < 500: all written
    measured = admitter.reason_cost_s
    assert 0 < measured < 0.01

    # Every reason changes (the limit in it; one more admitted moves the positions).
    for project, gpu in (("speech", 7), ("vision", 9)):  # guarantees stay within the cluster's 16
        changed = world.admin.put(f"/api/v1/projects/{project}/quotas/gpu-a",
                                  json={"guaranteed": {"gpu": gpu, "cpu": 64, "memory": "512Gi"}})
        assert changed.status_code == 200, changed.text
    admitter.reason_cost_s = 0.01  # as if the last reasons took 10 ms each: 25 ms fits 2, the floor is 50
    result = admitter.run_pass()
    assert (result.admitted, result.reasons_left) == (1, 109 - 50)
    assert admitter.reason_cost_s < 0.01  # measured again on this pass's 50
    while admitter.run_pass().reasons_left:
        pass
    items = [w for page in (1, 2)
             for w in world.alice.get("/api/v1/workloads", params={"page_size": 100, "page": page}).json()["items"]]
    reasons = {w["status_reason"] for w in items if w["status_reason"].startswith("waiting")}
    assert len(reasons) == 109 and all("(limit 9)" in r for r in reasons), sorted(reasons)[:3]


def test_the_scheduler_keeps_one_object_per_amount_asked_for(world):
    """Its memory holds every waiting and running workload: those that ask for the same
    amounts share one request (100,000 workloads ask for a few dozen distinct ones)."""
    ids = [submit(world.alice, name=f"same-{i}", resources={"gpu": 3, "cpu": 2, "memory": "8Gi"}).json()["id"]
           for i in range(4)]
    other = submit(world.alice, name="other", resources={"gpu": 1, "cpu": 2, "memory": "8Gi"}).json()["id"]
    admitter = Admitter(world.api.engine)
    admitter.run_pass()
    held = {**admitter.queued, **{wid: w for on in admitter.admitted.values() for wid, w in on.items()}}
    assert set(held) >= {*ids, other} and any(wid in admitter.queued for wid in ids)  # some wait, some run
    assert len({id(held[wid].request) for wid in ids}) == 1
    assert held[other].request is not held[ids[0]].request and held[other].request.cpu == 2000
