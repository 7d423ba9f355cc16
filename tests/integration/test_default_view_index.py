"""The Workloads table's default view (every status but Deleted) is read from its own
narrow partial index, so a jump deep into a big project's pages walks that index without
testing each entry's status; its pages are the rows the same statuses, listed one by one,
give."""

from __future__ import annotations

from sqlalchemy import select

from corral.db.engine import read_tx
from corral.db.tables import projects, workloads
from corral.domain.statuses import DEFAULT_VISIBLE_STATUSES
from corral.services import listing
from corral.services.principal import Principal
from tests.integration.conftest import submit
from tests.integration.plans import page_of_ids_plan, statements_run

VISIBLE = [s.value for s in DEFAULT_VISIBLE_STATUSES]


def _fill(world, n=30):
    for i in range(n):
        created = submit(world.alice, name=f"w{i}")
        assert created.status_code == 201, created.text
        if i % 4 == 1:  # never placed: Deleted at once
            assert world.alice.delete(f"/api/v1/workloads/{created.json()['id']}").status_code == 202


def _ids(client, **params):
    response = client.get("/api/v1/workloads", params={"project": "vision", "page_size": 4, **params})
    assert response.status_code == 200, response.text
    return response.json()


def test_default_view_pages_are_the_rows_of_every_visible_status_in_order(world):
    _fill(world)
    with world.api.engine.connect() as conn:  # what the pages must hold, asked for plainly
        expected = list(conn.execute(
            select(workloads.c.id).join(projects, projects.c.id == workloads.c.project_id)
            .where(projects.c.name == "vision", workloads.c.status.in_(VISIBLE))
            .order_by(workloads.c.created_at.desc(), workloads.c.id.desc())).scalars())
    assert len(expected) == 30 - 8
    assert _ids(world.alice)["total"] == len(expected)
    for page in range(1, 8):  # jumps, from the front and (past the middle) from the end
        body = _ids(world.alice, page=page)
        assert [w["id"] for w in body["items"]] == expected[(page - 1) * 4:page * 4], page
        assert all(w["status"] != "Deleted" for w in body["items"])


def test_a_deep_page_of_the_default_view_walks_the_narrow_index(world):
    _fill(world)
    engine = world.api.engine
    with statements_run(engine, lambda sql: "OFFSET" in sql.upper() and sql.lstrip().upper().startswith("SELECT")) \
            as statements, read_tx(engine) as conn:
        page = listing.list_workloads(conn, Principal(0, "admin@example.com", "admin"),
                                      listing.WorkloadQuery(project="vision", page=2, page_size=4))
    assert len(page["items"]) == 4
    [page_ids] = statements
    # Two indexes give this order and cover this read; the narrow one is the cheaper walk,
    # and the only one whose WHERE matches the query's (planners could weigh them otherwise
    # on another version: then look at the deep page's time in bench/list_latency.py).
    plan = page_of_ids_plan(engine, page_ids)
    if engine.dialect.name == "sqlite":
        assert "USING COVERING INDEX ix_workloads_project_visible" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
    else:
        assert "Index Only Scan" in plan and "ix_workloads_project_visible" in plan, plan
        assert "Filter" not in plan.split("->", 2)[1], plan  # no status tested per entry
