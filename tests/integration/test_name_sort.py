"""Sorting workloads by name ignores case (issue 14 item 10), and is still read from an
index ordered as the table sorts (lower(name), created_at, id), on both databases."""

from __future__ import annotations

import pytest

from corral.db.engine import read_tx
from corral.services import listing
from corral.services.principal import Principal
from tests.integration.conftest import submit
from tests.integration.plans import page_of_ids_plan, statements_run

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
    with statements_run(engine, lambda sql: "ORDER BY lower(" in sql and sql.lstrip().upper().startswith("SELECT")) \
            as statements, read_tx(engine) as conn:
        page = listing.list_workloads(conn, Principal(0, "admin@example.com", "admin"),
                                      listing.WorkloadQuery(project="vision", sort=sort))
    assert [w["name"] for w in page["items"]] == sorted(NAMES, key=str.lower, reverse=sort.startswith("-"))
    [page_ids] = statements  # the page: its ids from the index (a subquery), then their rows
    plan = page_of_ids_plan(engine, page_ids)
    if engine.dialect.name == "sqlite":
        assert "USING INDEX ix_workloads_project_name" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
    else:
        assert "ix_workloads_project_name" in plan, plan
        assert "Sort" not in plan, plan
