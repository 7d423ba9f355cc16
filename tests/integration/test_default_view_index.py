"""The Workloads table's default view (every status but Deleted) is read from its own
narrow partial index, so a jump deep into a big project's pages walks that index without
testing each entry's status; its pages are the rows the same statuses, listed one by one,
give."""

from __future__ import annotations

from sqlalchemy import event

from corral.db.engine import read_tx
from corral.domain.statuses import DEFAULT_VISIBLE_STATUSES
from corral.services import listing
from corral.services.principal import Principal
from tests.integration.conftest import submit

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


def test_default_view_pages_are_those_of_every_visible_status_named(world):
    _fill(world)
    default = _ids(world.alice)
    named = _ids(world.alice, status=VISIBLE)
    assert default["total"] == named["total"] == 30 - 8
    for page in range(1, 8):  # jumps, from the front and (past the middle) from the end
        rows = [w["id"] for w in _ids(world.alice, page=page)["items"]]
        assert rows == [w["id"] for w in _ids(world.alice, page=page, status=VISIBLE)["items"]], page
        assert len(rows) == (4 if page < 6 else 2 if page == 6 else 0)
    shown = [w for page in range(1, 7) for w in _ids(world.alice, page=page)["items"]]
    assert all(w["status"] != "Deleted" for w in shown)
    assert len({w["id"] for w in shown}) == 22


def test_a_deep_page_of_the_default_view_walks_the_narrow_index(world):
    _fill(world)
    engine = world.api.engine
    statements: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "OFFSET" in statement.upper() and statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with read_tx(engine) as conn:
            page = listing.list_workloads(conn, Principal(0, "admin@example.com", "admin"),
                                          listing.WorkloadQuery(project="vision", page=2, page_size=4))
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert len(page["items"]) == 4
    [page_ids] = statements
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            plan = "\n".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + page_ids[0],
                                                                       page_ids[1]).all())
            page_of_ids = plan.split("SCAN anon")[0]  # the subquery, before the page's rows are read
            assert "USING COVERING INDEX ix_workloads_project_visible" in page_of_ids, plan
            assert "TEMP B-TREE" not in page_of_ids, plan
        else:
            # With sequential scans and sorting priced out, the narrow index is the cheapest
            # walk in this order only if its WHERE matches the query's.
            conn.exec_driver_sql("SET enable_sort = off")
            conn.exec_driver_sql("SET enable_seqscan = off")
            plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + page_ids[0], page_ids[1]).all())
            page_of_ids = plan.split("Limit", 1)[1]
            assert "Index Only Scan" in page_of_ids and "ix_workloads_project_visible" in page_of_ids, plan
            assert "Filter" not in page_of_ids.split("->", 2)[1], plan  # no status tested per entry
