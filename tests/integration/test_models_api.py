"""The model store and evaluation results over the real API (both databases): what an agent
reports, what members see, what is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from corral.services.admission import run_pass
from tests.integration.conftest import submit


def _finish(world, workload_id: int, result: dict | None, status: str = "Completed"):
    agent = world.api.as_token(world.agent_token)
    comp = world.admin.get(f"/api/v1/workloads/{workload_id}").json()["components"][0]["id"]
    observed = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    update = {"component_id": comp, "status": status, "observed_at": observed}
    if result is not None:
        update["result"] = result
    return agent.post("/api/v1/agent/component-statuses", json={"updates": [update]})


def _evaluation(world, name: str, model: str, metrics: dict) -> int:
    wid = submit(world.alice, type="evaluation", name=name, model=model, dataset="squad",
                 command="true").json()["id"]
    run_pass(world.api.engine)
    assert _finish(world, wid, {"metrics": metrics}).status_code == 200
    return wid


def test_a_download_result_lists_the_model_and_its_evaluations_compare(world):
    wid = submit(world.alice, type="model_download", name="dl", source="https://example.org/tiny.bin").json()["id"]
    run_pass(world.api.engine)
    result = {"model": "tiny", "path": "/x/tiny", "bytes": 1234, "files": 2, "kind": "download",
              "source": "https://example.org/tiny.bin", "created_at": "2026-01-01T00:00:00+00:00"}
    assert _finish(world, wid, result).status_code == 200
    detail = world.alice.get(f"/api/v1/workloads/{wid}").json()
    assert detail["status"] == "Complete" and detail["components"][0]["result"]["model"] == "tiny"
    page = world.alice.get("/api/v1/models", params={"project": "vision"}).json()
    [model] = page["items"]
    assert (model["name"], model["project"], model["cluster"], model["bytes"], model["files"], model["kind"]) == (
        "tiny", "vision", "gpu-a", 1234, 2, "download")
    assert model["workload"] == {"id": wid, "name": "dl"} and page["total"] == 1
    first = _evaluation(world, "eval-1", "tiny", {"accuracy": 0.5, "f1": 0.4})
    second = _evaluation(world, "eval-2", "tiny", {"accuracy": 0.75, "loss": 1.5, "note": "longer context"})
    _evaluation(world, "eval-other", "another-model", {"accuracy": 0.1})
    shown = world.alice.get(f"/api/v1/models/{model['id']}").json()
    assert [e["id"] for e in shown["evaluations"]] == [second, first]  # newest first, this model only
    assert shown["metric_names"] == ["accuracy", "f1", "loss", "note"]
    assert shown["evaluations"][0]["metrics"] == {"accuracy": 0.75, "loss": 1.5, "note": "longer context"}
    assert world.alice.get(f"/api/v1/workloads/{first}").json()["metrics"] == {"accuracy": 0.5, "f1": 0.4}
    everything = world.alice.get("/api/v1/evaluations", params={"project": "vision"}).json()
    assert len(everything["evaluations"]) == 3
    only = world.alice.get("/api/v1/evaluations", params={"project": "vision", "model": "tiny"}).json()
    assert [e["id"] for e in only["evaluations"]] == [second, first]


def test_another_project_sees_neither_the_model_nor_the_metrics(world):
    wid = submit(world.alice, type="model_download", name="dl", source="org/secret-model").json()["id"]
    run_pass(world.api.engine)
    _finish(world, wid, {"model": "secret-model", "bytes": 1, "files": 1})
    evaluation = _evaluation(world, "eval", "secret-model", {"accuracy": 0.9})
    model_id = world.alice.get("/api/v1/models").json()["items"][0]["id"]
    # bob is a member of speech only.
    assert world.bob.get("/api/v1/models").json() == {"items": [], "page": 1, "page_size": 50, "total": 0}
    assert world.bob.get("/api/v1/models", params={"project": "vision"}).status_code == 404
    assert world.bob.get(f"/api/v1/models/{model_id}").status_code == 404
    assert world.bob.get("/api/v1/evaluations", params={"project": "vision"}).status_code == 404
    assert world.bob.get(f"/api/v1/workloads/{evaluation}").status_code == 404
    assert world.admin.get(f"/api/v1/models/{model_id}").json()["evaluations"][0]["metrics"] == {"accuracy": 0.9}
    # A user's token is no agent token: it cannot report a store.
    assert world.alice.put("/api/v1/agent/models", json={"models": []}).status_code == 401


def test_the_inventory_replaces_what_was_known(world):
    agent = world.api.as_token(world.agent_token)
    own = submit(world.alice, name="train").json()["id"]
    foreign = submit(world.bob, name="other", project="speech").json()["id"]
    inventory = {"models": [
        {"project": "vision", "name": "a", "kind": "training", "bytes": 10, "files": 1, "workload_id": own},
        # A manifest (written by vision's workloads) claiming speech's workload: not linked.
        {"project": "vision", "name": "b", "bytes": 20, "files": 1, "workload_id": foreign},
        {"project": "nope", "name": "c"},  # no such project: ignored
    ]}
    assert agent.put("/api/v1/agent/models", json=inventory).json() == {"added": 2, "changed": 0, "removed": 0}
    items = {m["name"]: m for m in world.alice.get("/api/v1/models").json()["items"]}
    assert items["a"]["workload"] == {"id": own, "name": "train"} and items["b"]["workload"] is None
    # b removed on disk, a replaced: the next inventory says so.
    replaced = {"models": [{"project": "vision", "name": "a", "kind": "training", "bytes": 99, "files": 3}]}
    assert agent.put("/api/v1/agent/models", json=replaced).json() == {"added": 0, "changed": 1, "removed": 1}
    [a] = world.alice.get("/api/v1/models").json()["items"]
    assert (a["name"], a["bytes"], a["files"]) == ("a", 99, 3)
    assert world.alice.get("/api/v1/models", params={"name": "b"}).json()["total"] == 0


def test_an_inventory_page_replaces_its_own_range_only(world):
    agent = world.api.as_token(world.agent_token)

    def put(names: list[str], after: str | None, through: str | None):
        return agent.put("/api/v1/agent/models", json={
            "models": [{"project": "vision", "name": n} for n in names],
            "after": ["vision", after] if after else None, "through": ["vision", through] if through else None})

    assert put(["a", "b", "c", "d", "e"], None, None).json()["added"] == 5
    # The page (b, d]: c gone, c2 new; a, b (before it) and e (after it) untouched.
    assert put(["c2", "d"], "b", "d").json() == {"added": 1, "changed": 0, "removed": 1}
    # The last page, (d, end): e gone.
    assert put([], "d", None).json() == {"added": 0, "changed": 0, "removed": 1}
    names = sorted(m["name"] for m in world.alice.get("/api/v1/models").json()["items"])
    assert names == ["a", "b", "c2", "d"]
    # A model outside the page's range is refused, and nothing of the page is stored.
    refused = put(["a", "x"], "b", "d")
    assert refused.status_code == 422 and "outside this page's range" in refused.text
    assert sorted(m["name"] for m in world.alice.get("/api/v1/models").json()["items"]) == names


def test_bad_results_and_inventories_are_refused(world):
    wid = submit(world.alice, type="evaluation", name="e", model="m", dataset="d", command="true").json()["id"]
    run_pass(world.api.engine)
    for bad, field in (
        ({"metrics": {"acc": "x" * 300}}, "metrics.acc"),
        ({"metrics": {"acc": [1, 2]}}, "metrics.acc"),
        ({"metrics": {f"m{i}": i for i in range(101)}}, "at most 100"),
        ({"metrics": {"acc": {"nested": 1}}}, "metrics.acc"),
        ({"metrics": "high"}, "JSON object"),
        ({"surprise": 1}, "unknown field"),
        ({"model": "../../etc"}, "result.model"),
        ({"error": "x" * 5000}, "result.error"),
        ({"source": "s" * 5000}, "result.source"),
    ):
        answer = _finish(world, wid, bad)
        assert answer.status_code == 422 and field in answer.text, (bad, answer.text)
    huge = {"metrics": {f"metric-{i:03d}-{'x' * 100}": "y" * 200 for i in range(90)}}
    answer = _finish(world, wid, huge)
    assert answer.status_code == 422 and "larger than" in answer.text
    # Nothing of the refused batches was stored.
    detail = world.alice.get(f"/api/v1/workloads/{wid}").json()
    assert detail["components"][0]["result"] is None and detail["status"] != "Complete"
    agent = world.api.as_token(world.agent_token)
    for entry in ({"project": "vision", "name": "a b"}, {"project": "vision", "name": "a", "bytes": -1},
                  {"project": "vision", "name": "a", "extra": 1}):
        assert agent.put("/api/v1/agent/models", json={"models": [entry]}).status_code == 422
    too_many = {"models": [{"project": "vision", "name": f"m{i}"} for i in range(10_001)]}
    assert agent.put("/api/v1/agent/models", json=too_many).status_code == 422
