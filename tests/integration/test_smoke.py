from tests.integration.conftest import submit


def test_submit_then_list_then_get(world):
    created = submit(world.alice, name="hello")
    assert created.status_code == 201, created.text
    wid = created.json()["id"]
    assert created.json()["status"] == "Pending"
    listed = world.alice.get("/api/v1/workloads", params={"project": "vision"})
    assert listed.status_code == 200, listed.text
    assert listed.json()["total"] == 1
    assert listed.json()["items"][0]["id"] == wid
    detail = world.alice.get(f"/api/v1/workloads/{wid}")
    assert detail.status_code == 200, detail.text
    assert detail.json()["queue_position"] == {"position": 1, "of": 1}
    deleted = world.alice.delete(f"/api/v1/workloads/{wid}")
    assert deleted.status_code == 202, deleted.text
    assert deleted.json()["status"] == "Deleted"
