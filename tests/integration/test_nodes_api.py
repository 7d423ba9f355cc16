"""A training workload spanning nodes through the API: it holds every node's resources
(what admission counts against the quota), and a bad ``nodes`` is a 422 naming the field."""

from __future__ import annotations

from tests.integration.conftest import submit


def test_a_job_spanning_nodes_holds_every_nodes_resources(world):
    made = submit(world.alice, type="training", name="wide", dataset="d", nodes=2,
                  resources={"gpu": 1, "cpu": 2, "memory": "8Gi"})
    assert made.status_code == 201, made.text
    detail = world.alice.get(f"/api/v1/workloads/{made.json()['id']}").json()
    assert detail["spec"]["nodes"] == 2
    assert (detail["resources"]["gpu"], detail["resources"]["cpu"], detail["resources"]["memory"]) == \
        (2, 4, 16 * 2**30)
    [component] = detail["components"]
    assert component["kind"] == "job" and component["resources"]["gpu"] == 2


def test_bad_nodes_are_refused_naming_the_field(world):
    for body, needle in (({"type": "training", "dataset": "d", "nodes": 0}, "greater than or equal to 1"),
                         ({"type": "custom", "nodes": 2}, "Extra inputs")):
        response = submit(world.alice, **body)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["field"] == "nodes" and needle in error["message"], error
