"""One CPU unit in and out (issue 14, item 1): a request reads a bare number as cores, and
every response says cores, so what is read can be written back unchanged. Reading
millicores and writing them back made a 64-core quota one of 64,000 cores."""

from __future__ import annotations

from typing import Any

from corral.services.admission import run_pass
from tests.integration.conftest import submit

GI = 2**30


def _quota(client: Any, project: str = "vision") -> dict[str, Any]:
    response = client.get(f"/api/v1/projects/{project}/quotas/gpu-a")
    assert response.status_code == 200, response.text
    return response.json()


def test_a_quota_read_and_written_back_is_unchanged(world):
    before = _quota(world.admin)
    assert before["guaranteed"] == {"gpu": 8, "cpu": 64, "memory": 512 * GI, "ephemeral_storage": 0}
    put = world.admin.put("/api/v1/projects/vision/quotas/gpu-a",
                          json={"guaranteed": before["guaranteed"], "limit": before["limit"]})
    assert put.status_code == 200, put.text
    assert {k: put.json()[k] for k in ("guaranteed", "limit")} == {k: before[k] for k in ("guaranteed", "limit")}
    # Fractions too, and a limit with an unbounded dimension, through PATCH as well.
    fraction = world.admin.put("/api/v1/projects/speech/quotas/gpu-a", json={
        "guaranteed": {"cpu": "1500m", "memory": "1Gi"}, "limit": {"cpu": "2500m", "memory": None}}).json()
    assert fraction["guaranteed"]["cpu"] == 1.5 and fraction["limit"]["cpu"] == 2.5
    assert fraction["available"]["cpu"] == 2.5 and fraction["available"]["memory"] is None
    again = world.admin.patch("/api/v1/projects/speech/quotas/gpu-a",
                              json={"guaranteed": fraction["guaranteed"], "limit": fraction["limit"]})
    assert again.status_code == 200, again.text
    assert again.json()["guaranteed"] == fraction["guaranteed"] and again.json()["limit"] == fraction["limit"]


def test_used_and_borrowed_and_cluster_capacity_say_cores(world):
    # speech: guaranteed 1 core, may borrow up to 3; it asks for 2.25 and is admitted.
    assert world.admin.put("/api/v1/projects/speech/quotas/gpu-a", json={
        "guaranteed": {"cpu": 1, "memory": "1Gi"}, "limit": {"cpu": 3, "memory": "4Gi"}}).status_code == 200
    asked = submit(world.bob, project="speech", resources={"gpu": 0, "cpu": "2250m", "memory": "1Gi"})
    assert asked.status_code == 201, asked.text
    assert run_pass(world.api.engine).admitted == 1
    quota = _quota(world.bob, "speech")
    assert quota["used"]["cpu"] == 2.25 and quota["borrowed"]["cpu"] == 1.25 and quota["available"]["cpu"] == 0.75
    cluster = world.admin.get("/api/v1/clusters/gpu-a").json()
    assert cluster["capacity"] == {"gpu": 16, "cpu": 128, "memory": 2**40, "ephemeral_storage": 10 * 2**40}
    patched = world.admin.patch("/api/v1/clusters/gpu-a", json={"capacity": cluster["capacity"]})
    assert patched.status_code == 200 and patched.json()["capacity"] == cluster["capacity"]


def test_a_workload_shows_cores_everywhere_and_its_spec_resubmits_as_it_was(world):
    created = submit(world.alice, name="half", resources={"gpu": 0, "cpu": "500m", "memory": "1Gi"})
    assert created.status_code == 201, created.text
    assert created.json()["resources"]["cpu"] == 0.5
    wid = created.json()["id"]
    row = [i for i in world.alice.get("/api/v1/workloads").json()["items"] if i["id"] == wid][0]
    assert row["resources"] == {"gpu": 0, "cpu": 0.5, "memory": GI}
    detail = world.alice.get(f"/api/v1/workloads/{wid}").json()
    assert detail["resources"]["cpu"] == 0.5 and detail["spec"]["resources"]["cpu"] == 0.5
    assert {c["resources"]["cpu"] for c in detail["components"]} == {0.5}
    # The details' spec, submitted again, asks for the same: not 500 cores.
    again = world.alice.post("/api/v1/workloads", json={**detail["spec"], "name": "half-again"})
    assert again.status_code == 201, again.text
    assert again.json()["resources"] == detail["resources"]
    whole = submit(world.alice, name="two", resources={"gpu": 0, "cpu": 2, "memory": "1Gi"}).json()
    assert whole["resources"]["cpu"] == 2 and isinstance(whole["resources"]["cpu"], int)
    deleted = world.alice.delete(f"/api/v1/workloads/{wid}")
    assert deleted.status_code == 202 and deleted.json()["resources"]["cpu"] == 0.5


def test_the_openapi_document_says_cores(world):
    schemas = world.admin.get("/openapi.json").json()["components"]["schemas"]
    cpu = schemas["ResourcesOut"]["properties"]["cpu"]
    assert cpu["type"] == "number" and cpu["description"] == "cores (0.5 is 500m)"
    assert schemas["QuotaOut"]["properties"]["guaranteed"] == {"$ref": "#/components/schemas/ResourcesOut"}
    assert schemas["WorkloadRow"]["properties"]["resources"] == {"$ref": "#/components/schemas/RowResourcesOut"}
