"""Deleting many workloads in one request (POST /api/v1/workloads/delete), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import event, func, select

from corral.db.tables import events, workloads
from corral.services.admission import run_pass
from tests.integration.conftest import submit

URL = "/api/v1/workloads/delete"


def _now(offset: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset)).isoformat()


def _running(world, n: int, project: str = "vision", client=None, **overrides) -> list[int]:
    """n workloads admitted on the cluster and reported Running by its agent."""
    client = client or world.alice
    ids = [submit(client, name=f"r{i}", project=project, resources={"gpu": 0, "cpu": "100m", "memory": "1Mi"},
                  **overrides).json()["id"] for i in range(n)]
    run_pass(world.api.engine)
    agent = world.api.as_token(world.agent_token)
    updates = []
    for wid in ids:
        for comp in world.admin.get(f"/api/v1/workloads/{wid}").json()["components"]:
            updates.append({"component_id": comp["id"], "status": "Running", "reason": "started",
                            "observed_at": _now(0.5)})
    assert agent.post("/api/v1/agent/component-statuses", json={"updates": updates}).status_code == 200
    assert {world.admin.get(f"/api/v1/workloads/{w}").json()["status"] for w in ids} == {"Running"}
    return ids


def _snapshot(engine):
    with engine.connect() as conn:
        rows = conn.execute(select(workloads.c.id, workloads.c.status, workloads.c.delete_requested_at,
                                   workloads.c.version).order_by(workloads.c.id)).all()
        n_events = conn.execute(select(func.count()).select_from(events)).scalar_one()
    return rows, n_events


def _status(world, wid):
    return world.admin.get(f"/api/v1/workloads/{wid}").json()["status"]


def test_by_ids_each_gets_a_result_and_the_agent_is_told_in_one_poll(world):
    agent = world.api.as_token(world.agent_token)
    cursor = agent.get("/api/v1/agent/work").json()["cursor"]
    running = _running(world, 3)
    queued = submit(world.alice, name="queued", resources={"gpu": 8}).json()["id"]  # over what is free: never placed
    theirs = submit(world.bob, project="speech", name="secret-name").json()["id"]
    missing = 999_999
    response = world.alice.post(URL, json={"ids": [*running, queued, theirs, missing, running[0]]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dry_run"] is False
    by_id = {i["id"]: i for i in body["items"]}
    assert [i["id"] for i in body["items"]] == [*running, queued, theirs, missing]  # asked order, once each
    for wid in running:
        assert (by_id[wid]["result"], by_id[wid]["status"], by_id[wid]["project"]) == ("done", "Deleting", "vision")
        assert _status(world, wid) == "Deleting"
    assert (by_id[queued]["result"], by_id[queued]["status"]) == ("done", "Deleted")  # never created: at once
    # Another project's workload is not found, and its name and project are not told.
    assert by_id[theirs] == {"id": theirs, "name": None, "project": None, "status": None, "result": "not_found",
                             "message": f"workload {theirs} not found"}
    assert "secret-name" not in response.text and "speech" not in response.text
    assert _status(world, theirs) == "Pending"
    assert by_id[missing]["result"] == "not_found"
    assert body["counts"] == {"done": 4, "already_deleting": 0, "already_deleted": 0, "not_found": 2}
    # The cluster's agent learns of all of them in its next poll, as for single deletes.
    work = agent.get("/api/v1/agent/work", params={"after": cursor}).json()
    stops = {i["workload_id"] for i in work["items"] if i["action"] == "stop" and i["stop_as"] == "Deleted"}
    assert set(running) <= stops
    # Each deletion is on the record as if deleted one by one.
    detail = world.alice.get(f"/api/v1/workloads/{running[0]}").json()
    kinds = [(e["kind"], e["actor"]) for e in detail["events"]][-2:]
    assert kinds == [("delete_requested", "alice@example.com"), ("status_changed", "alice@example.com")]
    # The kept counts follow: the stats say 3 Deleting, 1 Deleted (from vision's 4).
    stats = world.alice.get("/api/v1/workloads/stats", params={"project": "vision"}).json()["by_status"]
    assert (stats["Deleting"], stats["Deleted"], stats["Running"], stats["Pending"]) == (3, 1, 0, 0)
    quota = world.alice.get("/api/v1/projects/vision/quotas/gpu-a").json()
    assert quota["queued"] == 0


def test_a_dry_run_lists_what_it_would_touch_and_changes_nothing(world):
    running = _running(world, 2)
    done = _running(world, 1)
    assert world.alice.delete(f"/api/v1/workloads/{done[0]}").status_code == 202
    before = _snapshot(world.api.engine)
    response = world.alice.post(URL, json={"filter": {"project": "vision"}, "dry_run": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dry_run"] is True
    assert [(i["id"], i["result"], i["status"]) for i in body["items"]] == [
        (running[0], "done", "Running"), (running[1], "done", "Running"), (done[0], "already_deleting", "Deleting")]
    assert body["items"][0]["message"] == "would be queued for deletion"
    by_ids = world.alice.post(URL, json={"ids": [*running, 999_999], "dry_run": True}).json()
    assert by_ids["counts"] == {"done": 2, "already_deleting": 0, "already_deleted": 0, "not_found": 1}
    assert _snapshot(world.api.engine) == before


def test_deleting_again_is_idempotent(world):
    running = _running(world, 2)
    queued = submit(world.alice, name="queued").json()["id"]
    first = world.alice.post(URL, json={"ids": [*running, queued]}).json()
    assert first["counts"]["done"] == 3
    before = _snapshot(world.api.engine)
    second = world.alice.post(URL, json={"ids": [*running, queued]})
    assert second.status_code == 200
    assert [(i["result"], i["message"]) for i in second.json()["items"]] == [
        ("already_deleting", f"workload {running[0]} is already being deleted (Deleting)"),
        ("already_deleting", f"workload {running[1]} is already being deleted (Deleting)"),
        ("already_deleted", f"workload {queued} is already Deleted")]
    assert _snapshot(world.api.engine) == before  # nothing written, no event


def test_delete_failed_workloads_are_retried(world):
    (wid,) = _running(world, 1)
    world.alice.post(URL, json={"ids": [wid]})
    comp = world.alice.get(f"/api/v1/workloads/{wid}").json()["components"][0]["id"]
    world.api.as_token(world.agent_token).post("/api/v1/agent/component-statuses", json={"updates": [
        {"component_id": comp, "status": "DeleteFailed", "reason": "stuck", "observed_at": _now(1)}]})
    assert _status(world, wid) == "DeleteFailed"
    retry = world.alice.post(URL, json={"filter": {"status": ["Delete Failed"]}}).json()
    assert [(i["id"], i["result"], i["status"]) for i in retry["items"]] == [(wid, "done", "Deleting")]
    assert world.alice.get(f"/api/v1/workloads/{wid}").json()["events"][-2]["message"] == "deletion retried"


def test_the_filter_takes_the_list_filters(world):
    running = _running(world, 3)
    other_type = _running(world, 1, type="training", dataset="s3://d", command="python t.py")
    named = submit(world.alice, name="special-eval").json()["id"]
    theirs = _running(world, 2, project="speech", client=world.bob)
    # Status and type (labels or values, any case), within what the caller sees.
    body = world.alice.post(URL, json={"filter": {"status": ["running"], "type": ["Custom"]},
                                       "dry_run": True}).json()
    assert [i["id"] for i in body["items"]] == running
    body = world.alice.post(URL, json={"filter": {"name": "SPECIAL"}, "dry_run": True}).json()
    assert [i["id"] for i in body["items"]] == [named]
    body = world.alice.post(URL, json={"filter": {"name": "%"}, "dry_run": True}).json()
    assert body["items"] == []  # a wildcard is a character, not a pattern
    # The same workloads as the list shows for the same filters (one plan for both).
    for filters, params in (({"name": "special-e"}, {"name": "special-e"}),
                            ({"status": ["Pending", "running"]}, {"status": ["Pending", "Running"]}),
                            ({"type": ["training"], "cluster": "gpu-a"}, {"type": "training", "cluster": "gpu-a"})):
        body = world.alice.post(URL, json={"filter": filters, "dry_run": True}).json()
        listed = world.alice.get("/api/v1/workloads", params={**params, "page_size": 100}).json()["items"]
        assert sorted(i["id"] for i in body["items"]) == sorted(i["id"] for i in listed) != [], filters
    body = world.alice.post(URL, json={"filter": {"cluster": "gpu-a", "created_by": "ALICE@example.com"},
                                       "dry_run": True}).json()
    assert [i["id"] for i in body["items"]] == [*running, *other_type, named]
    # An admin sees every project; a filter by project narrows it.
    body = world.admin.post(URL, json={"filter": {"status": ["Running"], "project": "speech"}}).json()
    assert [(i["id"], i["result"]) for i in body["items"]] == [(w, "done") for w in theirs]
    assert {_status(world, w) for w in running + other_type} == {"Running"}
    assert _status(world, named) == "Pending"


def test_bad_requests_are_refused_clearly(world):
    (wid,) = _running(world, 1)
    before = _snapshot(world.api.engine)
    cases = [
        ({"filter": {}}, 422, "empty_filter"),
        ({"filter": {"name": ""}}, 422, "empty_filter"),
        ({}, 422, None),
        ({"ids": [wid], "filter": {"project": "vision"}}, 422, None),
        ({"ids": []}, 422, None),
        ({"ids": list(range(1, 10_002))}, 422, None),
        ({"ids": [0]}, 422, None),
        ({"filter": {"status": ["Sleeping"]}}, 422, None),
        ({"filter": {"type": ["nope"]}}, 422, None),
        ({"filter": {"project": "speech"}}, 404, "not_found"),  # not a member: as if it did not exist
        ({"filter": {"project": "vision", "colour": "red"}}, 422, None),
    ]
    for body, code, error in cases:
        response = world.alice.post(URL, json=body)
        assert response.status_code == code, (body, response.text)
        if error:
            assert response.json()["error"]["code"] == error, (body, response.text)
    assert "at least one of project, status" in world.alice.post(URL, json={"filter": {}}).json()["error"]["message"]
    assert world.api.anonymous.post(URL, json={"ids": [wid]}).status_code == 401
    assert _snapshot(world.api.engine) == before


def test_someone_outside_the_project_deletes_nothing_and_learns_nothing(world):
    running = _running(world, 2)
    for caller in (world.carol, world.bob):
        body = world.alice.post(URL, json={"ids": running, "dry_run": True}).json()
        assert body["counts"]["done"] == 2  # alice could
        attack = caller.post(URL, json={"ids": running}).json()
        assert [(i["result"], i["name"], i["project"], i["status"]) for i in attack["items"]] == [
            ("not_found", None, None, None)] * 2
        by_filter = caller.post(URL, json={"filter": {"status": ["Running"]}}).json()
        assert by_filter["items"] == []
        by_name = caller.post(URL, json={"filter": {"name": "r"}}).json()
        assert by_name["items"] == []
    assert {_status(world, w) for w in running} == {"Running"}


def test_the_statements_do_not_grow_with_the_number_of_workloads(world):
    """Set-based: deleting 40 workloads takes as many statements as deleting 2."""
    few, many = _running(world, 2), _running(world, 40)
    counted: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        counted.append(statement)

    engine = world.api.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert world.alice.post(URL, json={"ids": few}).json()["counts"]["done"] == 2
        n_few = len(counted)
        counted.clear()
        assert world.alice.post(URL, json={"ids": many}).json()["counts"]["done"] == 40
        n_many = len(counted)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert n_many == n_few, (n_few, n_many)
    assert n_many < 20


def test_the_web_pages_delete_selected_with_one_confirmation(world):
    from tests.integration.conftest import web_sign_in

    running = _running(world, 2)
    theirs = submit(world.bob, project="speech", name="hidden-name").json()["id"]
    browser, csrf = web_sign_in(world.api, "alice@example.com")
    url = "/workloads/delete-selected"
    form = {"csrf_token": csrf, "ids": [str(i) for i in [*running, theirs]]}
    # Without the session's CSRF token: refused, nothing deleted.
    assert browser.post(url, data={"ids": str(running[0])}).status_code == 403
    # The confirmation (no script): what will be deleted, and a button that deletes just those.
    preview = browser.post(url, data=form)
    assert preview.status_code == 200
    assert "Delete 2 workloads?" in preview.text and "r0" in preview.text and "not found" in preview.text
    assert "hidden-name" not in preview.text
    assert preview.text.count('name="ids"') == 2
    assert {_status(world, w) for w in running} == {"Running"}
    # The page's script asks for JSON; then deletes.
    fetch = {"X-Requested-With": "fetch"}
    asked = browser.post(url, data=form, headers=fetch).json()
    assert asked["dry_run"] and [i["result"] for i in asked["items"]] == ["done", "done", "not_found"]
    done = browser.post(url, data={**form, "step": "delete"}, headers=fetch).json()
    assert [(i["result"], i["status_label"]) for i in done["items"]] == [
        ("done", "Deleting"), ("done", "Deleting"), ("not_found", "")]
    assert {_status(world, w) for w in running} == {"Deleting"} and _status(world, theirs) == "Pending"
    page = browser.post(url, data={**form, "step": "delete"})
    assert page.status_code == 200 and "already being deleted" in page.text
    # Bad selections say what is wrong.
    assert browser.post(url, data={"csrf_token": csrf}).status_code == 422
    assert browser.post(url, data={"csrf_token": csrf, "ids": "x"}).status_code == 422
    assert browser.post(url, data={"csrf_token": csrf, "ids": str(2**64)}).status_code == 422


def test_write_statuses_refuses_a_row_changed_since_it_was_read(world):
    """The many-row status write keeps the single write's guard: a row whose version moved
    on is a conflict, and the transaction writes nothing."""
    import pytest

    from corral.db.engine import write_tx
    from corral.domain.statuses import WorkloadStatus
    from corral.services.clock import utcnow
    from corral.services.errors import Conflict
    from corral.services.status import STATE_COLUMNS, write_statuses

    ids = _running(world, 3)
    engine = world.api.engine
    with engine.connect() as conn:
        rows = conn.execute(select(*STATE_COLUMNS).where(workloads.c.id.in_(ids)).order_by(workloads.c.id)).all()
    with write_tx(engine) as conn:  # someone else moves the middle one on
        conn.execute(workloads.update().where(workloads.c.id == ids[1]).values(version=workloads.c.version + 1))
    before = _snapshot(engine)
    with pytest.raises(Conflict), write_tx(engine) as conn:
        write_statuses(conn, [(r, WorkloadStatus.FAILED, "test") for r in rows], utcnow(), "test")
    assert _snapshot(engine) == before
    with write_tx(engine) as conn:  # read afresh: it goes through
        fresh = conn.execute(select(*STATE_COLUMNS).where(workloads.c.id.in_(ids)).order_by(workloads.c.id)).all()
        changes = write_statuses(conn, [(r, WorkloadStatus.FAILED, "test") for r in fresh], utcnow(), "test")
    assert [(c.old, c.new) for c in changes] == [(WorkloadStatus.RUNNING, WorkloadStatus.FAILED)] * 3
    stats = world.alice.get("/api/v1/workloads/stats", params={"project": "vision"}).json()["by_status"]
    assert (stats["Failed"], stats["Running"]) == (3, 0)
    assert world.alice.get("/api/v1/projects/vision/quotas/gpu-a").json()["used"]["cpu"] == 0
