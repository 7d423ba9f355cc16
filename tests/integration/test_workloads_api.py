"""The Workloads page of the seed documents, statement by statement, through the API."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from corral.db.tables import components, events, workloads
from tests.integration.conftest import submit


def _list(client, **params):
    response = client.get("/api/v1/workloads", params={"project": "vision", **params})
    assert response.status_code == 200, response.text
    return response.json()


def _report(world, updates):
    """The cluster's agent reports component statuses (what statuses.md calls the source of truth)."""
    agent = world.api.as_token(world.agent_token)
    response = agent.post("/api/v1/agent/component-statuses", json={"updates": updates})
    assert response.status_code == 200, response.text
    return response.json()


def _components(world, wid):
    return world.alice.get(f"/api/v1/workloads/{wid}").json()["components"]


def _now(offset: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset)).isoformat()


def test_seed_table_shows_name_cluster_and_resources(world):
    """Seed: "The paginated table shows the name of the workload, the cluster the workload is assigned to,
    and how many resources the workload requires." """
    submit(world.alice, name="llama-ft", resources={"gpu": 2, "cpu": "500m", "memory": "16Gi"})
    row = _list(world.alice)["items"][0]
    assert row["name"] == "llama-ft"
    assert row["cluster"] == "gpu-a"
    assert row["resources"] == {"gpu": 2, "cpu": 0.5, "memory": 16 * 2**30}
    assert row["created_by"] == "alice@example.com" and row["created_at"]


def test_seed_all_workload_types_can_be_submitted(world):
    """Seed: the eight workload types (Model Download ... Workspace, and Custom)."""
    bodies = {
        "model_download": {"source": "meta-llama/Llama-3.1-8B"},
        "inference": {"model": "meta-llama/Llama-3.1-8B"},
        "training": {"dataset": "s3://d", "command": "python train.py"},
        "pre_training": {"dataset": "s3://d", "command": "python pretrain.py"},
        "fine_tuning": {"base_model": "llama", "dataset": "alpaca", "command": "python ft.py"},
        "evaluation": {"model": "llama", "tasks": ["mmlu"], "command": "lm-eval"},
        "workspace": {},
        "custom": {"command": "sleep 1"},
    }
    for kind, extra in bodies.items():
        body = {"type": kind, "name": f"a-{kind}", "project": "vision", **extra}
        response = world.alice.post("/api/v1/workloads", json=body)
        assert response.status_code == 201, (kind, response.text)
        assert response.json()["type"] == kind
    stats = world.alice.get("/api/v1/workloads/stats", params={"project": "vision"}).json()
    assert stats["by_type"] == {kind: 1 for kind in bodies}
    assert stats["by_status"]["Pending"] == 8


def test_statuses_come_from_components_and_never_stay_added(world):
    """Seed status table: Added until components exist (never lingers: they are registered at submit),
    Pending while all are Pending, Running when any runs, Complete when all completed."""
    wid = submit(world.alice).json()["id"]
    detail = world.alice.get(f"/api/v1/workloads/{wid}").json()
    assert detail["status"] == "Pending", "a submitted workload must not stay Added"
    assert detail["components"] and all(c["status"] == "Pending" for c in detail["components"])
    (job,) = _components(world, wid)
    _report(world, [{"component_id": job["id"], "status": "Running", "reason": "started", "observed_at": _now(1)}])
    assert world.alice.get(f"/api/v1/workloads/{wid}").json()["status"] == "Running"
    _report(world, [{"component_id": job["id"], "status": "Completed", "reason": "exit 0", "observed_at": _now(2)}])
    detail = world.alice.get(f"/api/v1/workloads/{wid}").json()
    assert detail["status"] == "Complete"
    assert detail["run_seconds"] > 0 and detail["first_running_at"] and detail["finished_at"]
    kinds = [e["message"] for e in detail["events"] if e["kind"] == "status_changed"]
    assert kinds == ["Pending -> Running: started", "Running -> Complete: exit 0"]


def test_failed_component_fails_the_workload_with_its_reason(world):
    wid = submit(world.alice).json()["id"]
    (job,) = _components(world, wid)
    _report(world, [{"component_id": job["id"], "status": "Failed", "reason": "exit code 3", "observed_at": _now(1)}])
    detail = world.alice.get(f"/api/v1/workloads/{wid}").json()
    assert (detail["status"], detail["status_reason"]) == ("Failed", "exit code 3")


def test_stale_status_updates_are_ignored(world):
    wid = submit(world.alice).json()["id"]
    (job,) = _components(world, wid)
    # Times after the submission but not in the future (those are clamped to the server's clock).
    submitted = datetime.now(UTC)
    time.sleep(0.3)

    def at(offset: float) -> str:
        return (submitted + timedelta(seconds=offset)).isoformat()

    result = _report(world, [
        {"component_id": job["id"], "status": "Completed", "observed_at": at(0.2)},
        {"component_id": job["id"], "status": "Running", "observed_at": at(0.05)},  # older, arrives later
    ])
    assert result == {"applied": 1, "ignored": 1}
    _report(world, [{"component_id": job["id"], "status": "Running", "observed_at": at(0.1)}])
    assert world.alice.get(f"/api/v1/workloads/{wid}").json()["status"] == "Complete"


def test_an_agent_cannot_report_another_clusters_components(world):
    wid = submit(world.alice).json()["id"]
    (job,) = _components(world, wid)
    other = world.admin.post("/api/v1/clusters", json={"name": "other", "kind": "slurm"}).json()
    response = world.api.as_token(other["agent_token"]).post("/api/v1/agent/component-statuses", json={
        "updates": [{"component_id": job["id"], "status": "Failed", "observed_at": _now(1)}]})
    assert response.json() == {"applied": 0, "ignored": 1}
    assert world.alice.get(f"/api/v1/workloads/{wid}").json()["status"] == "Pending"


def test_seed_delete_queues_the_workload_for_deletion(world):
    """Seed: "Delete: Queues the workload for deletion." Deleting until every component is Deleted."""
    wid = submit(world.alice, type="inference", model="m", command=None).json()["id"]
    server, endpoint = _components(world, wid)
    _report(world, [
        {"component_id": server["id"], "status": "Running", "observed_at": _now(1)},
        {"component_id": endpoint["id"], "status": "Completed", "observed_at": _now(1)},
    ])
    assert world.alice.get(f"/api/v1/workloads/{wid}").json()["status"] == "Running"
    deleting = world.alice.delete(f"/api/v1/workloads/{wid}")
    assert deleting.status_code == 202
    assert deleting.json()["status"] == "Deleting"
    again = world.alice.delete(f"/api/v1/workloads/{wid}")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_deleting"
    # Sticky: a component still reported Running does not bring the workload back.
    _report(world, [{"component_id": server["id"], "status": "Running", "observed_at": _now(2)}])
    assert world.alice.get(f"/api/v1/workloads/{wid}").json()["status"] == "Deleting"
    _report(world, [{"component_id": server["id"], "status": "Deleted", "observed_at": _now(3)},
                    {"component_id": endpoint["id"], "status": "Deleted", "observed_at": _now(3)}])
    detail = world.alice.get(f"/api/v1/workloads/{wid}").json()
    assert detail["status"] == "Deleted"
    gone = world.alice.delete(f"/api/v1/workloads/{wid}")
    assert gone.status_code == 409 and gone.json()["error"]["code"] == "already_deleted"


def test_deleting_a_workload_never_placed_is_deleted_at_once(world):
    wid = submit(world.alice).json()["id"]
    response = world.alice.delete(f"/api/v1/workloads/{wid}")
    assert response.json()["status"] == "Deleted"
    assert response.json()["components"][0]["reason"] == "never created on the cluster"


def test_delete_failed_can_be_retried(world):
    wid = submit(world.alice).json()["id"]
    (job,) = _components(world, wid)
    _report(world, [{"component_id": job["id"], "status": "Running", "observed_at": _now(1)}])
    world.alice.delete(f"/api/v1/workloads/{wid}")
    _report(world, [{"component_id": job["id"], "status": "DeleteFailed", "reason": "finalizer stuck",
                     "observed_at": _now(2)}])
    detail = world.alice.get(f"/api/v1/workloads/{wid}").json()
    assert (detail["status"], detail["status_reason"]) == ("DeleteFailed", "finalizer stuck")
    retry = world.alice.delete(f"/api/v1/workloads/{wid}")
    assert retry.status_code == 202 and retry.json()["status"] == "Deleting"


def test_seed_default_view_shows_every_status_but_deleted(world):
    """Seed: "The view shows all workload statuses by default except Deleted." """
    kept = submit(world.alice, name="kept").json()["id"]
    gone = submit(world.alice, name="gone").json()["id"]
    world.alice.delete(f"/api/v1/workloads/{gone}")
    page = _list(world.alice)
    assert [w["id"] for w in page["items"]] == [kept] and page["total"] == 1
    deleted = _list(world.alice, status="Deleted")
    assert [w["id"] for w in deleted["items"]] == [gone] and deleted["total"] == 1
    both = _list(world.alice, status=["Deleted", "Pending"])
    assert {w["id"] for w in both["items"]} == {kept, gone} and both["total"] == 2


def test_seed_filters_by_name_type_and_status(world):
    """Seed: "Filters can be used to find workloads by name, type, or status." """
    a = submit(world.alice, name="Llama-Finetune-A", type="fine_tuning", base_model="m", dataset="d").json()["id"]
    b = submit(world.alice, name="mistral-serve", type="inference", model="m", command=None).json()["id"]
    c = submit(world.alice, name="llama-eval", type="evaluation", model="m", tasks=["x"]).json()["id"]
    (job,) = _components(world, c)
    _report(world, [{"component_id": job["id"], "status": "Failed", "observed_at": _now(1)}])

    def ids(**params):
        page = _list(world.alice, **params)
        assert len(page["items"]) == page["total"] or not page["total_exact"]
        return {w["id"] for w in page["items"]}

    assert ids(name="llama") == {a, c}  # contains, case-insensitive
    assert ids(name="LLAMA-fine") == {a}
    assert ids(name="ll") == {a, c}  # shorter than a trigram
    assert ids(name="nothing-like-it") == set()
    assert ids(name="50%_off") == set()  # wildcards are literal
    assert ids(type="inference") == {b}
    assert ids(type=["inference", "evaluation"]) == {b, c}
    assert ids(type="Fine-Tuning") == {a}  # the seed's label works too
    assert ids(status="Failed") == {c}
    assert ids(status=["Failed", "Pending"]) == {a, b, c}
    assert ids(name="llama", status="Pending") == {a}
    assert ids(name="llama", type="evaluation", status="Failed") == {c}
    assert ids(cluster="gpu-a") == {a, b, c}
    assert ids(created_by="alice@example.com") == {a, b, c}
    assert ids(created_by="bob@example.com") == set()


def test_seed_table_is_paginated_with_total(world):
    """Seed: "The paginated table"; the API returns {items, page, page_size, total}."""
    created = [submit(world.alice, name=f"w{i:02d}").json()["id"] for i in range(7)]
    first = _list(world.alice, page_size=3)
    assert (first["page"], first["page_size"], first["total"], first["total_exact"]) == (1, 3, 7, True)
    assert [w["id"] for w in first["items"]] == created[::-1][:3]  # newest first
    third = _list(world.alice, page_size=3, page=3)
    assert [w["id"] for w in third["items"]] == [created[0]]
    assert _list(world.alice, page_size=3, page=4)["items"] == []
    all_ids = [w["id"] for p in (1, 2, 3) for w in _list(world.alice, page_size=3, page=p)["items"]]
    assert sorted(all_ids) == sorted(created)


@pytest.mark.parametrize("column", ["name", "type", "cluster", "gpu", "cpu", "memory", "status", "created_by",
                                    "created_at"])
def test_sortable_by_every_column_either_direction(world, column):
    specs = [("b-job", "custom", 2, 4), ("a-job", "training", 1, 8), ("c-job", "evaluation", 3, 1)]
    for name, kind, gpu, cpu in specs:
        extra = {"custom": {}, "training": {"dataset": "d"}, "evaluation": {"model": "m", "tasks": ["t"]}}[kind]
        submit(world.admin, name=name, type=kind, resources={"gpu": gpu, "cpu": cpu, "memory": f"{gpu}Gi"},
               **extra)
    key = {"cluster": "cluster", "gpu": "resources", "cpu": "resources", "memory": "resources"}.get(column, column)

    def value(w):
        return w["resources"][column] if key == "resources" else w[key]

    for direction in ("", "-"):
        rows = _list(world.alice, sort=f"{direction}{column}")["items"]
        keys = [(value(w), w["id"]) for w in rows]
        assert keys == sorted(keys, reverse=direction == "-"), (column, direction, keys)


def test_details_show_when_and_by_whom(world):
    """Seed: "Show details: Shows details of the workload, such as when it was created and by whom." """
    wid = submit(world.alice, name="detailed").json()["id"]
    detail = world.alice.get(f"/api/v1/workloads/{wid}").json()
    assert detail["created_by"] == "alice@example.com"
    created = datetime.fromisoformat(detail["created_at"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60
    assert detail["project"] == "vision" and detail["cluster"] == "gpu-a"
    assert detail["queue_position"] == {"position": 1, "of": 1}
    assert detail["wait_seconds"] >= 0 and detail["run_seconds"] == 0
    assert detail["events"][0]["kind"] == "submitted" and detail["events"][0]["actor"] == "alice@example.com"


def test_queue_position_follows_priority_then_submission(world):
    low = submit(world.alice, name="low", priority="low").json()["id"]
    first = submit(world.alice, name="first").json()["id"]
    high = submit(world.alice, name="high", priority="high").json()["id"]
    positions = {wid: world.alice.get(f"/api/v1/workloads/{wid}").json()["queue_position"]
                 for wid in (low, first, high)}
    assert positions == {high: {"position": 1, "of": 3}, first: {"position": 2, "of": 3},
                         low: {"position": 3, "of": 3}}


def test_kept_counts_match_the_rows(world):
    """The totals come from kept counts: they must equal a real count after any mix of changes."""
    wids = [submit(world.alice, name=f"c{i}").json()["id"] for i in range(6)]
    for wid in wids[:2]:
        world.alice.delete(f"/api/v1/workloads/{wid}")
    (job,) = _components(world, wids[2])
    _report(world, [{"component_id": job["id"], "status": "Running", "observed_at": _now(1)}])
    with world.api.engine.connect() as conn:
        real = dict(conn.execute(select(workloads.c.status, func.count()).group_by(workloads.c.status)).all())
    stats = world.alice.get("/api/v1/workloads/stats", params={"project": "vision"}).json()
    assert {k: v for k, v in stats["by_status"].items() if v} == real
    assert _list(world.alice)["total"] == real["Pending"] + real["Running"]
    quota = world.alice.get("/api/v1/projects/vision/quotas/gpu-a").json()
    assert quota["queued"] == 4  # two deleted left the queue; the running one was never admitted here


def _event_count(world):
    with world.api.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(events)).scalar_one()


def _workload_count(world):
    with world.api.engine.connect() as conn:
        return (conn.execute(select(func.count()).select_from(workloads)).scalar_one(),
                conn.execute(select(func.count()).select_from(components)).scalar_one())


BAD_SUBMISSIONS = [
    ({"type": "custom", "name": "x", "project": "vision"}, 422, "command", "exactly one of command"),
    ({"type": "custom", "name": "x", "project": "vision", "command": "x", "batch_script": "#!/bin/sh\n"}, 422,
     "batch_script", "not command and batch_script"),
    ({"type": "training", "name": "x", "project": "vision", "dataset": "d"}, 422, "command",
     "give an image or a command"),
    ({"type": "inference", "name": "x", "project": "vision", "model": "m", "engine": "custom"}, 422, "command",
     "needs a command or an image"),
    ({"type": "custom", "name": "x", "project": "vision", "command": ""}, 422, "command", "must not be empty"),
    ({"type": "custom", "name": "x", "project": "vision", "batch_script": 5}, 422, "batch_script", "string"),
    ({"type": "teleport", "name": "x", "project": "vision"}, 422, "type", "unknown workload type"),
    ({"name": "x", "project": "vision", "command": "x"}, 422, None, "type"),
    ({"type": "custom", "name": "", "project": "vision", "command": "x"}, 422, "name", "must be 1 to 128"),
    ({"type": "custom", "name": "x", "project": "vision", "command": "x", "resources": {"gpu": -1}}, 422,
     "resources.gpu", "greater than or equal"),
    ({"type": "custom", "name": "x", "project": "vision", "command": "x", "resources": {"memory": "lots"}}, 422,
     "resources.memory", "not a byte quantity"),
    ({"type": "fine_tuning", "name": "x", "project": "vision", "dataset": "d", "command": "x"}, 422,
     "base_model", "Field required"),
    ({"type": "custom", "name": "x", "project": "vision", "command": "x", "bogus": 1}, 422, "bogus", "Extra"),
    ({"type": "custom", "name": "x", "project": "vision", "command": "x", "resources": {"gpu": 9}}, 422,
     "resources", "exceeds the quota limit"),
    ({"type": "custom", "name": "x", "project": "vision", "command": "x", "cluster": "nope"}, 404, "cluster",
     "not found"),
    ({"type": "custom", "name": "x", "project": "nope", "command": "x"}, 404, "project", "not found"),
    ({"type": "custom", "name": "x", "project": "vision", "command": "x", "env": {"1BAD": "v"}}, 422, "env",
     "environment variable"),
]


@pytest.mark.parametrize(("body", "status", "field", "needle"), BAD_SUBMISSIONS,
                         ids=[f"{b.get('type')}-{f}-{n}"[:60] for b, _, f, n in BAD_SUBMISSIONS])
def test_bad_submissions_are_refused_and_leave_nothing(world, body, status, field, needle):
    before = (_event_count(world), _workload_count(world))
    response = world.alice.post("/api/v1/workloads", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    if field:
        assert error["field"] == field, error
    assert needle in error["message"], error
    assert (_event_count(world), _workload_count(world)) == before


def test_submit_to_an_unhealthy_cluster_is_refused_with_503(world):
    from sqlalchemy import update

    from corral.db.tables import clusters

    with world.api.engine.begin() as conn:
        conn.execute(update(clusters).values(last_heartbeat_at=datetime.now(UTC) - timedelta(hours=1)))
    assert world.alice.get("/api/v1/clusters/gpu-a").json()["status"] == "unhealthy"
    response = submit(world.alice)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "cluster_unhealthy"
    assert "unhealthy" in response.json()["error"]["message"]


@pytest.mark.parametrize(("params", "field"), [
    ({"page": 0}, "page"), ({"page_size": 101}, "page_size"), ({"sort": "-colour"}, "sort"),
    ({"status": "Exploded"}, "status"), ({"type": "teleport"}, "type"),
])
def test_bad_list_parameters_name_the_field(world, params, field):
    response = world.alice.get("/api/v1/workloads", params={"project": "vision", **params})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


def test_unknown_workload_is_404_in_the_error_shape(world):
    response = world.alice.get("/api/v1/workloads/999999")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_common_name_terms_are_filtered_along_the_sort_index_with_an_estimated_total(world, monkeypatch):
    from corral.services import listing

    # Make every term "common" and the sample tiny, as a project of 200,000 rows would.
    monkeypatch.setattr(listing, "RARE_NAME_MATCHES", 0)
    monkeypatch.setattr(listing, "NAME_SAMPLE", 4)
    ids = [submit(world.alice, name=f"llama-{i}" if i % 2 == 0 else f"other-{i}").json()["id"] for i in range(8)]
    page = _list(world.alice, name="LLAMA", page_size=3)
    assert [w["id"] for w in page["items"]] == [ids[6], ids[4], ids[2]]  # right rows, newest first
    # Two of the four newest match, out of 8: estimated 4, and said to be an estimate.
    assert (page["total"], page["total_exact"]) == (4, False)
    narrow = _list(world.alice, name="llama", type="custom", status="Pending", page_size=10)
    assert [w["id"] for w in narrow["items"]] == [ids[6], ids[4], ids[2], ids[0]]
    # Fewer candidate rows than the sample: counted exactly.
    monkeypatch.setattr(listing, "NAME_SAMPLE", 100)
    assert (_list(world.alice, name="llama")["total"], _list(world.alice, name="llama")["total_exact"]) == (4, True)
