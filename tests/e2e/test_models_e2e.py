"""The model store and evaluation results end to end: `corral serve` with its built-in
local cluster really downloads a model (from an http server started here) and runs
evaluations whose commands write metrics files; users see them through the API and the CLI
(a subprocess), another project's member does not, and a workload cannot store junk."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import work_root_for
from tests.e2e.bytes_server import serving
from tests.e2e.conftest import Cli, LiveServer, failed, ok

WEIGHTS = b"tiny model weights\n" * 1000


@pytest.fixture(scope="module")
def weights_url() -> Iterator[str]:
    with serving(WEIGHTS, "tiny-weights.bin") as url:
        yield url


def _client(server: LiveServer, token: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token or server.admin_token}"},
                        timeout=30)


def _run(client: httpx.Client, **body: Any) -> dict[str, Any]:
    """Submit to the local cluster and wait for the end."""
    spec = {"project": "default", "cluster": "local", "resources": {"cpu": "100m", "memory": "128Mi"}, **body}
    created = client.post("/api/v1/workloads", json=spec)
    assert created.status_code == 201, created.text
    wid = created.json()["id"]
    deadline = time.monotonic() + 60
    while True:
        detail = client.get(f"/api/v1/workloads/{wid}").json()
        if detail["status"] in ("Complete", "Failed"):
            return detail
        assert time.monotonic() < deadline, f"workload {wid} still {detail['status']}: {detail['status_reason']}"
        time.sleep(0.1)


def _evaluate(client: httpx.Client, name: str, model: str, metrics: str, *, stored: bool = True) -> dict[str, Any]:
    """An evaluation whose command writes ``metrics`` (JSON text) to the metrics file (and,
    ``stored``, first checks that it was given the model's directory in the store)."""
    check = 'test -d "$CORRAL_MODEL_DIR" && ' if stored else ""
    return _run(client, type="evaluation", name=name, model=model, dataset="squad",
                command=f"{check}printf '%s' '{metrics}' > \"$CORRAL_METRICS_FILE\"")


def _member(server: LiveServer, tmp_path: Path, email: str, project: str) -> tuple[Cli, str]:
    admin = server.cli(tmp_path / "admin.json", token=server.admin_token)
    ok(admin.run("users", "create", email))
    token = json.loads(ok(admin.run("tokens", "create", email, "--json")))["token"]
    ok(admin.run("projects", "create", project))
    ok(admin.run("projects", "add-member", project, email))
    return server.cli(tmp_path / f"{email}.json", token=token), token


def test_a_downloaded_model_is_listed_and_its_evaluations_compared(live_server: LiveServer, weights_url: str,
                                                                   tmp_path: Path):
    client = _client(live_server)
    download = _run(client, type="model_download", name="fetch-tiny", source=weights_url, model_name="tiny")
    assert download["status"] == "Complete", download
    [component] = download["components"]
    assert component["result"]["model"] == "tiny" and component["result"]["bytes"] == len(WEIGHTS)

    # Listed as soon as the download shows Complete (the agent reports the store first).
    [model] = client.get("/api/v1/models", params={"project": "default", "name": "tiny"}).json()["items"]
    assert (model["project"], model["cluster"], model["kind"], model["source"]) == (
        "default", "local", "download", weights_url)
    assert model["bytes"] >= len(WEIGHTS) and model["files"] >= 1
    assert model["workload"] == {"id": download["id"], "name": "fetch-tiny"} and model["created_at"]

    cli = live_server.cli(tmp_path / "config.json", token=live_server.admin_token)
    listed = json.loads(ok(cli.run("models", "ls", "-p", "default", "--json")))
    assert [(m["name"], m["cluster"], m["workload"]["id"]) for m in listed] == [("tiny", "local", download["id"])]
    table = ok(cli.with_env(COLUMNS="200").run("models", "ls", "-p", "default"))
    assert "tiny" in table and "fetch-tiny" in table and "local" in table and "Ki" in table

    # Two evaluations of it (the second writes nested metrics, as harnesses do), one of another model.
    first = _evaluate(client, "eval-a", "tiny", '{"accuracy": 0.5, "f1": 0.25}')
    second = _evaluate(client, "eval-b", "tiny", '{"accuracy": 0.75, "squad": {"exact": 61.5}, "note": "v2"}')
    assert (first["status"], second["status"]) == ("Complete", "Complete"), (first, second)
    assert first["metrics"] == {"accuracy": 0.5, "f1": 0.25}
    assert second["metrics"] == {"accuracy": 0.75, "squad.exact": 61.5, "note": "v2"}
    shown = client.get(f"/api/v1/models/{model['id']}").json()
    assert [e["id"] for e in shown["evaluations"]] == [second["id"], first["id"]]
    assert shown["metric_names"] == ["accuracy", "f1", "note", "squad.exact"]

    got = ok(cli.with_env(COLUMNS="200").run("workloads", "get", str(second["id"])))
    assert "Metrics" in got and "squad.exact" in got and "61.5" in got and "0.75" in got
    compared = ok(cli.with_env(COLUMNS="200").run("models", "show", "tiny", "-p", "default"))
    assert "fetch-tiny" in compared and "Evaluations" in compared
    rows = {line.split()[0]: line for line in compared.splitlines() if line.strip()[:1].isdigit()}
    assert "0.75" in rows[str(second["id"])] and "61.5" in rows[str(second["id"])]
    assert "0.5" in rows[str(first["id"])] and "0.25" in rows[str(first["id"])]
    assert "no model 'nope'" in failed(cli.run("models", "show", "nope", "-p", "default"), 1)


def test_another_project_cannot_see_the_model_or_the_metrics(live_server: LiveServer, weights_url: str,
                                                              tmp_path: Path):
    client = _client(live_server)
    download = _run(client, type="model_download", name="fetch-private", source=weights_url, model_name="private")
    evaluation = _evaluate(client, "eval-private", "private", '{"secret_score": 0.99}')
    assert (download["status"], evaluation["status"]) == ("Complete", "Complete")
    model_id = client.get("/api/v1/models", params={"name": "private"}).json()["items"][0]["id"]

    outsider, token = _member(live_server, tmp_path, "eve@example.com", "elsewhere")
    eve = _client(live_server, token)
    assert eve.get("/api/v1/models").json()["total"] == 0
    assert eve.get(f"/api/v1/models/{model_id}").status_code == 404
    assert eve.get("/api/v1/models", params={"project": "default"}).status_code == 404
    assert eve.get("/api/v1/evaluations", params={"project": "default"}).status_code == 404
    assert eve.get(f"/api/v1/workloads/{evaluation['id']}").status_code == 404
    assert json.loads(ok(outsider.run("models", "ls", "--json"))) == []
    assert "not found" in failed(outsider.run("models", "show", "private", "-p", "default"))
    assert "secret_score" not in ok(outsider.run("models", "ls")) + outsider.run("workloads", "get",
                                                                                str(evaluation["id"])).stdout


def test_a_workload_cannot_store_junk_metrics(live_server: LiveServer):
    client = _client(live_server)
    huge = json.dumps({f"m{i}": "x" * 250 for i in range(100)})  # ~26 KB: over the 16 KiB cap
    for name, metrics, words in (("eval-huge", huge, "larger than"), ("eval-list", '{"acc": [1, 2]}', "metrics.acc"),
                                 ("eval-nan", '{"acc": NaN}', "metrics.acc")):
        detail = _evaluate(client, name, "whatever", metrics, stored=False)
        # The workload did its job: it completes, its result says what was refused and why.
        assert detail["status"] == "Complete", detail
        assert detail["metrics"] is None
        assert words in detail["components"][0]["result"]["error"], detail["components"][0]["result"]


def test_a_model_removed_from_the_disk_leaves_the_list(live_server: LiveServer, weights_url: str):
    client = _client(live_server)
    assert _run(client, type="model_download", name="fetch-gone", source=weights_url,
                model_name="gone")["status"] == "Complete"
    assert client.get("/api/v1/models", params={"name": "gone"}).json()["total"] == 1
    store = work_root_for(live_server.database.data_dir / "local-cluster") / "default" / "models" / "gone"
    shutil.rmtree(store)
    deadline = time.monotonic() + 30  # the agent looks again with its next heartbeat (10 s)
    while client.get("/api/v1/models", params={"name": "gone"}).json()["total"]:
        assert time.monotonic() < deadline, "the model removed from the store is still listed"
        time.sleep(0.5)


def test_a_result_file_written_by_hand_cannot_wedge_the_agent_or_forge_a_model(live_server: LiveServer):
    """Any job can write its result file itself: a list instead of an object, or a "model"
    with fields of the wrong kind. The agent keeps reporting, the junk becomes an error."""
    client = _client(live_server)
    junk = _run(client, type="custom", name="junk-result", command="printf '[1, 2]' > \"$CORRAL_RESULT_FILE\"")
    assert junk["status"] == "Complete", junk
    assert junk["components"][0]["result"] == {"error": "result refused: it is not a JSON object"}
    forged = _run(client, type="custom", name="forged-model",
                  command="printf '{\"model\": \"forged\", \"bytes\": \"lots\"}' > \"$CORRAL_RESULT_FILE\"")
    assert forged["components"][0]["result"]["error"].startswith("result refused: result.bytes")
    assert client.get("/api/v1/models", params={"name": "forged"}).json()["total"] == 0
    # And the agent still runs and reports what comes next.
    assert _run(client, type="custom", name="after-junk", command="true")["status"] == "Complete"
