"""Placement at admission (quotas.md, "Placement"), over the real database: a workload that
names no cluster waits unplaced and is admitted where its project has room now; a cluster
never heard from, or silent, is no placement; a named cluster is kept."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from corral.db.engine import write_tx
from corral.db.tables import clusters
from corral.services.admission import run_pass
from corral.services.clock import utcnow
from tests.integration.conftest import heartbeat, submit

QUOTA = {"guaranteed": {"gpu": 8, "cpu": 64, "memory": "512Gi"}}


def _cluster(world, name, heard=True):
    created = world.admin.post("/api/v1/clusters", json={
        "name": name, "kind": "kubernetes",
        "capacity": {"gpu": 16, "cpu": 128, "memory": "1Ti", "ephemeral_storage": "10Ti"}})
    assert created.status_code == 201, created.text
    token = created.json()["agent_token"]
    if heard:
        assert heartbeat(world.api, token).status_code == 200
    assert world.admin.put(f"/api/v1/projects/vision/quotas/{name}", json=QUOTA).status_code == 200
    return token


def _detail(client, wid):
    return client.get(f"/api/v1/workloads/{wid}").json()


def test_a_workload_without_a_cluster_is_placed_where_its_project_has_room(world):
    _cluster(world, "gpu-b")
    full = submit(world.alice, name="full", cluster="gpu-a", resources={"gpu": 8}).json()["id"]
    assert run_pass(world.api.engine).admitted == 1
    assert _detail(world.alice, full)["cluster"] == "gpu-a"

    anywhere = submit(world.alice, name="anywhere", resources={"gpu": 4}).json()["id"]
    assert _detail(world.alice, anywhere)["status_reason"].startswith("queued: waiting for admission on a cluster")
    assert run_pass(world.api.engine).admitted == 1
    placed = _detail(world.alice, anywhere)
    assert placed["cluster"] == "gpu-b" and placed["admitted_at"] is not None
    assert placed["status_reason"] == "admitted to cluster gpu-b; waiting for its agent to start it"
    # Kept totals follow it: used and queued per cluster, counts per cluster.
    a = world.alice.get("/api/v1/projects/vision/quotas/gpu-a").json()
    b = world.alice.get("/api/v1/projects/vision/quotas/gpu-b").json()
    assert (a["used"]["gpu"], a["queued"], b["used"]["gpu"], b["queued"]) == (8, 0, 4, 0)
    page = world.alice.get("/api/v1/workloads", params={"project": "vision", "cluster": "gpu-b"}).json()
    assert [w["id"] for w in page["items"]] == [anywhere] and page["total"] == 1


def test_a_workload_that_fits_nowhere_waits_with_a_reason_for_each_cluster(world):
    _cluster(world, "gpu-b")
    for cluster in ("gpu-a", "gpu-b"):
        submit(world.alice, name=f"on-{cluster}", cluster=cluster, resources={"gpu": 8})
    assert run_pass(world.api.engine).admitted == 2
    waiting = submit(world.alice, name="waiting", resources={"gpu": 2}).json()["id"]
    run_pass(world.api.engine)
    reason = _detail(world.alice, waiting)["status_reason"]
    assert reason.startswith("cluster gpu-a: waiting for quota: gpu 8/8 in use in project vision (limit 8), "
                             "2 requested; cluster gpu-b: waiting for quota: gpu 8/8 in use"), reason
    assert reason.endswith("; position 1 of 1")


def test_a_cluster_never_heard_from_or_silent_is_no_placement(world):
    _cluster(world, "aaa-new", heard=False)  # sorts first by name
    _cluster(world, "gpu-b")
    submit(world.alice, name="fills-a", cluster="gpu-a", resources={"gpu": 8})
    assert run_pass(world.api.engine).admitted == 1
    first = submit(world.alice, name="first", resources={"gpu": 2}).json()["id"]
    assert run_pass(world.api.engine).admitted == 1
    assert _detail(world.alice, first)["cluster"] == "gpu-b"

    with write_tx(world.api.engine) as conn:  # gpu-b falls silent
        conn.execute(update(clusters).where(clusters.c.name == "gpu-b")
                     .values(last_heartbeat_at=utcnow() - timedelta(hours=1)))
    second = submit(world.alice, name="second", resources={"gpu": 2})
    assert second.status_code == 201, second.text
    run_pass(world.api.engine)
    detail = _detail(world.alice, second.json()["id"])
    # It waits on the healthy cluster's quota, and says why it is not placed on the others.
    assert detail["admitted_at"] is None
    assert detail["status_reason"].startswith("waiting for quota: gpu 8/8 in use"), detail["status_reason"]
    assert detail["status_reason"].endswith(
        "; position 1 of 1 (not placed on aaa-new: never heard from; gpu-b: its agent is silent)")


def test_a_named_cluster_is_kept_even_when_another_has_room(world):
    _cluster(world, "gpu-b")
    submit(world.alice, name="full", cluster="gpu-a", resources={"gpu": 8})
    run_pass(world.api.engine)
    named = submit(world.alice, name="named", cluster="gpu-a", resources={"gpu": 2}).json()["id"]
    run_pass(world.api.engine)
    detail = _detail(world.alice, named)
    assert detail["cluster"] == "gpu-a" and detail["admitted_at"] is None
