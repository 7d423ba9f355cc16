"""Projects, members, clusters, quotas and users: what admins manage and members read."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from corral.db.tables import events
from tests.integration.conftest import heartbeat, submit


def test_quota_view_shows_guaranteed_limit_used_borrowed_available_queued(world):
    submit(world.alice)
    quota = world.alice.get("/api/v1/projects/vision/quotas").json()
    assert len(quota) == 1
    q = quota[0]
    assert q["cluster"] == "gpu-a"
    assert q["guaranteed"]["gpu"] == 8 and q["limit"]["gpu"] == 8  # default: limit = guaranteed
    assert q["used"]["gpu"] == 0 and q["borrowed"]["gpu"] == 0
    assert q["available"]["gpu"] == 8
    assert q["queued"] == 1


def test_limit_may_be_raised_or_unbounded(world):
    raised = world.admin.put("/api/v1/projects/vision/quotas/gpu-a",
                             json={"guaranteed": {"gpu": 4}, "limit": {"gpu": 12}}).json()
    assert raised["guaranteed"]["gpu"] == 4 and raised["limit"]["gpu"] == 12
    assert raised["limit"]["cpu"] == 0  # dimensions left out equal the guarantee
    unbounded = world.admin.put("/api/v1/projects/vision/quotas/gpu-a",
                                json={"guaranteed": {"gpu": 4}, "limit": "unbounded"}).json()
    assert unbounded["limit"] == {"gpu": None, "cpu": None, "memory": None, "ephemeral_storage": None}
    assert unbounded["available"]["gpu"] is None
    # With an unbounded limit a request beyond the guarantee is accepted (it may borrow).
    assert submit(world.alice, resources={"gpu": 12}).status_code == 201


def test_sum_of_guarantees_may_not_exceed_capacity(world):
    # Capacity 16 GPUs; vision and speech hold 8 each.
    refused = world.admin.put("/api/v1/projects/vision/quotas/gpu-a", json={"guaranteed": {"gpu": 9}})
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "guarantees_exceed_capacity" and error["field"] == "guaranteed"
    assert "gpu: 17 guaranteed in all > capacity 16" in error["message"]
    assert world.alice.get("/api/v1/projects/vision/quotas/gpu-a").json()["guaranteed"]["gpu"] == 8


def test_limit_below_guarantee_is_refused(world):
    refused = world.admin.put("/api/v1/projects/vision/quotas/gpu-a",
                              json={"guaranteed": {"gpu": 4}, "limit": {"gpu": 2}})
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "limit.gpu"


def test_quota_amounts_are_read_in_humane_units_and_errors_say_them(world):
    put = world.admin.put
    quota = put("/api/v1/projects/vision/quotas/gpu-a",
                json={"guaranteed": {"gpu": 1, "cpu": "500m", "memory": "1Gi"},
                      "limit": {"cpu": 2, "memory": "16Gi", "ephemeral_storage": "500M"}}).json()
    assert quota["guaranteed"] == {"gpu": 1, "cpu": 0.5, "memory": 2**30, "ephemeral_storage": 0}
    assert quota["limit"] == {"gpu": 1, "cpu": 2, "memory": 16 * 2**30, "ephemeral_storage": 500 * 10**6}
    below = put("/api/v1/projects/vision/quotas/gpu-a",
                json={"guaranteed": {"cpu": 2}, "limit": {"cpu": "1500m"}}).json()["error"]
    assert below["field"] == "limit.cpu"
    assert "limit.cpu (1500m) is below guaranteed.cpu (2 cores)" in below["message"], below
    below = put("/api/v1/projects/vision/quotas/gpu-a",
                json={"guaranteed": {"memory": "16Gi"}, "limit": {"memory": "8Gi"}}).json()["error"]
    assert "limit.memory (8Gi) is below guaranteed.memory (16Gi)" in below["message"], below
    put("/api/v1/projects/vision/quotas/gpu-a", json={"guaranteed": {"gpu": 1, "cpu": 1, "memory": "1Gi"}})
    over = submit(world.alice, resources={"cpu": "1500m", "memory": "2Gi"}).json()["error"]
    assert over["code"] == "exceeds_quota_limit"
    assert "cpu 1500m > limit 1 core" in over["message"] and "memory 2Gi > limit 1Gi" in over["message"], over


def test_quota_changes_are_events_with_actor(world):
    world.admin.put("/api/v1/projects/vision/quotas/gpu-a", json={"guaranteed": {"gpu": 2}})
    log = world.alice.get("/api/v1/projects/vision/events").json()
    quota_events = [e for e in log if e["kind"] == "quota_set"]
    assert quota_events[0]["actor"] == "admin@example.com"
    assert "guaranteed gpu 2, cpu 0 cores, memory 0" in quota_events[0]["message"]


def test_submission_needs_a_quota_on_the_cluster(world):
    world.admin.post("/api/v1/clusters", json={"name": "gpu-b", "kind": "slurm", "capacity": {"gpu": 4}})
    response = submit(world.admin, cluster="gpu-b")  # an admin sees every cluster
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "no_quota"
    # A member sees only clusters where one of their projects holds a quota: to alice,
    # gpu-b does not exist (test_api_hardening: hidden names cannot be confirmed).
    assert submit(world.alice, cluster="gpu-b").status_code == 404


def test_cluster_is_chosen_when_not_named(world):
    response = submit(world.alice)
    assert response.status_code == 201 and response.json()["cluster"] == "gpu-a"


def test_cluster_status_from_heartbeat(world):
    created = world.admin.post("/api/v1/clusters", json={"name": "new-one", "kind": "local"}).json()
    assert created["status"] == "verifying"
    assert heartbeat(world.api, created["agent_token"], gpu=8, cpu="64", memory="256Gi").status_code == 200
    cluster = world.admin.get("/api/v1/clusters/new-one").json()
    assert cluster["status"] == "healthy"
    assert cluster["capacity"] == {"gpu": 8, "cpu": 64, "memory": 256 * 2**30, "ephemeral_storage": 0}
    assert "agent_token" not in cluster


def test_agent_token_rotation_invalidates_the_old_one(world):
    new = world.admin.post("/api/v1/clusters/gpu-a/agent-token").json()["agent_token"]
    assert heartbeat(world.api, world.agent_token).status_code == 401
    assert heartbeat(world.api, new).status_code == 200


@pytest.mark.parametrize("name", ["A", "UPPER", "has_underscore", "-leading", "x" * 42])
def test_project_names_are_dns_labels(world, name):
    response = world.admin.post("/api/v1/projects", json={"name": name})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "name"


def test_duplicate_names_conflict_and_leave_no_event(world):
    with world.api.engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(events)).scalar_one()
    for path, body in (("/api/v1/projects", {"name": "vision"}), ("/api/v1/clusters", {"name": "gpu-a", "kind": "local"}),
                       ("/api/v1/users", {"email": "alice@example.com"})):
        response = world.admin.post(path, json=body)
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "already_exists"
    with world.api.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == before


def test_project_with_live_workloads_cannot_be_deleted_until_they_are(world):
    wid = submit(world.alice).json()["id"]
    assert world.admin.delete("/api/v1/projects/vision").status_code == 409
    world.alice.delete(f"/api/v1/workloads/{wid}")
    assert world.admin.delete("/api/v1/projects/vision").status_code == 204
    assert world.admin.get("/api/v1/projects/vision").status_code == 404


def test_members_are_listed_and_removed(world):
    members = world.alice.get("/api/v1/projects/vision/members").json()
    assert [m["email"] for m in members] == ["alice@example.com"]
    assert world.admin.delete("/api/v1/projects/vision/members/alice@example.com").status_code == 204
    assert world.alice.get("/api/v1/projects/vision").status_code == 404


def test_user_admin(world):
    created = world.admin.post("/api/v1/users", json={"email": "Dave@Example.com", "role": "admin"})
    assert created.status_code == 201
    assert created.json()["email"] == "dave@example.com"
    bad = world.admin.post("/api/v1/users", json={"email": "not-an-email"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "email"


def test_token_expiry(world):
    past = world.alice.post("/api/v1/tokens", json={"name": "old", "expires_at": "2020-01-01T00:00:00Z"})
    assert past.status_code == 422 and past.json()["error"]["field"] == "expires_at"
    naive = world.alice.post("/api/v1/tokens", json={"name": "naive", "expires_at": "2099-01-01T00:00:00"})
    assert naive.status_code == 422
    soon = world.alice.post("/api/v1/tokens", json={"name": "soon", "expires_in_days": 1}).json()
    assert soon["expires_at"] is not None
    assert world.api.as_token(soon["token"]).get("/api/v1/users/me").status_code == 200


def test_openapi_is_served(api):
    spec = api.client.get("/openapi.json").json()
    assert "/api/v1/workloads" in spec["paths"]
