"""Workload names: one rule (letters, digits, '-', '_' and '.', starting with a letter or
digit, up to 128), the same 422 message whatever the type; workloads stored before the rule
keep their names and stay readable."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from corral.db.engine import write_tx
from corral.db.tables import workloads
from corral.domain.names import WORKLOAD_NAME_RULE
from tests.integration.conftest import submit

MESSAGE = f"name: must be {WORKLOAD_NAME_RULE}"


@pytest.mark.parametrize("name", ["Hello World!", "a/b", "", " padded", "-flag", ".hidden", "x" * 129, "naïve",
                                  "tab\there", "semi;colon"])
def test_a_name_outside_the_rule_is_refused_with_the_rule(world, name):
    response = submit(world.alice, name=name)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid" and error["field"] == "name"
    assert error["message"] == MESSAGE


def test_the_same_message_for_every_type(world):
    bodies = [{"type": "inference", "model": "m"}, {"type": "workspace"},
              {"type": "model_download", "source": "org/model"},
              {"type": "training", "dataset": "d", "command": "x"}]
    for body in bodies:
        response = world.alice.post("/api/v1/workloads", json={"name": "a b", "project": "vision", **body})
        assert response.status_code == 422 and response.json()["error"]["message"] == MESSAGE, response.text


@pytest.mark.parametrize("name", ["a", "llama-3.1_ft", "Run.2024-06-11", "x" * 128, "0lead"])
def test_names_within_the_rule_are_taken_as_given(world, name):
    response = submit(world.alice, name=name)
    assert response.status_code == 201, response.text
    assert world.alice.get(f"/api/v1/workloads/{response.json()['id']}").json()["name"] == name


def test_the_rule_is_in_the_openapi(world):
    schema = world.api.anonymous.get("/openapi.json").json()["components"]["schemas"]["CustomSpec"]
    assert schema["properties"]["name"]["description"] == WORKLOAD_NAME_RULE


def test_a_workload_named_before_the_rule_stays_readable_and_deletable(world):
    """Names are checked on submission only: one stored before (here: renamed in the
    database, as an old row would be) is listed, found, shown and deleted as any other."""
    wid = submit(world.alice, name="old").json()["id"]
    with write_tx(world.api.engine) as conn:
        conn.execute(update(workloads).where(workloads.c.id == wid).values(name="Hello World!"))
    page = world.alice.get("/api/v1/workloads", params={"project": "vision", "name": "hello wor"}).json()
    assert [w["name"] for w in page["items"]] == ["Hello World!"]
    assert world.alice.get(f"/api/v1/workloads/{wid}").json()["name"] == "Hello World!"
    assert world.alice.delete(f"/api/v1/workloads/{wid}").status_code in (200, 202)
