"""A model store larger than one request: `corral serve` with a small body limit
(64 KiB) and 1,500 models on its built-in cluster's disk. The agent sends its inventory in
pages (smaller ones once the server answers 413), every model is listed, and models removed
from the disk (the first, one in the middle, the last) leave the list while the rest stay."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest

from tests.conftest import work_root_for
from tests.e2e.conftest import LiveServer, make_database, start_server, stop_server

SOURCE = "https://models.example.org/" + "x" * 600  # long: 1,500 entries are about 1 MB


# SQLite only: the pages' ranges on PostgreSQL are tested over the API (test_models_api.py);
# this one costs two heartbeats of waiting.
@pytest.fixture(scope="module", params=["sqlite"])
def small_body_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                      _postgres_databases: ExitStack) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp(f"pages-{request.param}")
    server = start_server(make_database(request.param, root / "data", _postgres_databases), root / "server.log",
                          env_extra={"CORRAL_MAX_BODY_BYTES": "65536"})
    yield server
    stop_server(server)


def _listed(client: httpx.Client) -> set[tuple[str, str]]:
    names: set[tuple[str, str]] = set()
    for project in ("default", "research"):
        cursor_page = 1
        while True:
            page = client.get("/api/v1/models", params={"project": project, "page": cursor_page,
                                                        "page_size": 500}).json()
            names |= {(m["project"], m["name"]) for m in page["items"]}
            if cursor_page * 500 >= page["total"]:
                break
            cursor_page += 1
    return names


def _until(client: httpx.Client, wanted: set[tuple[str, str]], what: str) -> None:
    deadline = time.monotonic() + 40  # the agent looks at the store with each heartbeat (10 s)
    while (listed := _listed(client)) != wanted:
        assert time.monotonic() < deadline, f"{what}: {len(listed)} listed, {len(wanted)} expected; " \
                                            f"missing e.g. {sorted(wanted - listed)[:3]}, extra {sorted(listed - wanted)[:3]}"
        time.sleep(0.5)


def test_an_inventory_larger_than_a_request_is_listed_whole_and_removals_reach_it(small_body_server: LiveServer):
    server = small_body_server
    client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token}"}, timeout=30)
    assert client.post("/api/v1/projects", json={"name": "research"}).status_code == 201
    work = work_root_for(server.database.data_dir / "local-cluster")
    wanted = set()
    for project, count in (("default", 1000), ("research", 500)):
        for i in range(count):
            model = work / project / "models" / f"model-{i:04d}"
            model.mkdir(parents=True)
            (model / "corral-model.json").write_text(json.dumps(
                {"kind": "download", "source": SOURCE, "files": 1, "bytes": i,
                 "created_at": "2026-12-01T00:00:00+00:00"}))
            wanted.add((project, model.name))
    _until(client, wanted, "the whole store")  # ~1 MB of inventory through a 64 KiB body limit
    for project, name in (("default", "model-0000"), ("default", "model-0617"), ("research", "model-0499")):
        shutil.rmtree(work / project / "models" / name)
        wanted.discard((project, name))
    _until(client, wanted, "after three were removed from the disk")
