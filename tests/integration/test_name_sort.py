"""Sorting workloads by name ignores case (issue 14 item 10), and is still read from an
index ordered as the table sorts (lower(name), created_at, id), on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from corral.db.engine import read_tx
from corral.services import listing
from corral.services.principal import Principal
from tests.integration.conftest import submit

NAMES = ["beta", "Alpha", "gamma", "Delta", "alpha-2", "ALPHA-1"]


def test_sort_by_name_ignores_case_both_ways(world):
    for name in NAMES:
        assert submit(world.admin, name=name).status_code == 201
    for sort, reverse in (("name", False), ("-name", True)):
        response = world.alice.get("/api/v1/workloads", params={"project": "vision", "sort": sort})
        assert response.status_code == 200, response.text
        names = [w["name"] for w in response.json()["items"]]
        assert names == sorted(NAMES, key=str.lower, reverse=reverse), (sort, names)
    assert [w["name"] for w in world.alice.get("/api/v1/workloads", params={
        "project": "vision", "sort": "name"}).json()["items"]] == ["Alpha", "ALPHA-1", "alpha-2", "beta", "Delta",
                                                                    "gamma"]


@pytest.mark.parametrize("sort", ["name", "-name"])
def test_the_name_sort_reads_the_lower_name_index_without_sorting(world, sort):
    for name in NAMES:
        assert submit(world.admin, name=name).status_code == 201
    engine = world.api.engine
    statements: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "ORDER BY lower(" in statement and statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with read_tx(engine) as conn:
            page = listing.list_workloads(conn, Principal(0, "admin@example.com", "admin"), listing.WorkloadQuery(project="vision", sort=sort))
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert [w["name"] for w in page["items"]] == sorted(NAMES, key=str.lower, reverse=sort.startswith("-"))
    [page_ids] = statements  # the page: its ids from the index (a subquery), then their rows
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            plan = "\n".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + page_ids[0],
                                                                       page_ids[1]).all())
            page_of_ids = plan.split("SCAN anon")[0]  # the subquery, before the page's rows are read
            assert "USING INDEX ix_workloads_project_name" in page_of_ids, plan
            assert "TEMP B-TREE" not in page_of_ids, plan
        else:
            # With sorting priced out, a plan without a Sort node exists only if an index
            # gives this order.
            conn.exec_driver_sql("SET enable_sort = off")
            conn.exec_driver_sql("SET enable_seqscan = off")
            plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + page_ids[0], page_ids[1]).all())
            page_of_ids = plan.split("Limit", 1)[1]  # what the LIMIT reads; the rows are then sorted as a page
            assert "ix_workloads_project_name" in page_of_ids, plan
            assert "Sort" not in page_of_ids, plan
