"""Zero acknowledged submissions lost under kill -9: submissions are group-committed
(services.submit_batcher), and none is answered 201 before its batch has committed.

Eight clients submit as fast as they can; `corral serve` is killed with SIGKILL in the
middle; a new serve on the same database must hold every workload that was answered 201,
each once (a submission cut off without an answer may or may not have been written)."""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import make_database, start_server, stop_server


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_no_acknowledged_submission_is_lost_when_serve_is_killed(tmp_path: Path, kind: str) -> None:
    with ExitStack() as stack:
        database = make_database(kind, tmp_path / "data", stack)
        server = start_server(database, tmp_path / "serve.log")
        token = server.admin_token
        # A hard quota of one submission at a time: nearly all of them queue.
        headers = {"Authorization": f"Bearer {token}"}
        quota = httpx.put(f"{server.url}/api/v1/projects/default/quotas/local", headers=headers,
                          json={"guaranteed": {"cpu": "1m", "memory": "2Mi"}}, timeout=30)
        assert quota.status_code == 200, quota.text

        acknowledged: list[int] = []
        lock = threading.Lock()
        stop = threading.Event()

        def client(n: int) -> None:
            with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
                i = 0
                while not stop.is_set():
                    try:
                        r = http.post("/api/v1/workloads", json={
                            "type": "custom", "name": f"d{n}-{i}", "project": "default", "command": "true",
                            "resources": {"cpu": "1m", "memory": "2Mi"}})
                    except httpx.HTTPError:
                        return  # the server is gone: no answer, no promise
                    assert r.status_code == 201, r.text
                    with lock:
                        acknowledged.append(r.json()["id"])
                    i += 1

        clients = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for c in clients:
            c.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 150 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(server.process.pid, signal.SIGKILL)  # in the middle of the stream
        server.process.wait(timeout=10)
        stop.set()
        for c in clients:
            c.join(timeout=60)
        assert len(acknowledged) >= 150

        again = start_server(database, tmp_path / "serve-again.log")
        try:
            stored: list[int] = []
            page = 1
            with httpx.Client(base_url=again.url, headers=headers, timeout=30) as http:
                while True:
                    r = http.get("/api/v1/workloads", params={"project": "default", "page": page,
                                                              "page_size": 100})
                    assert r.status_code == 200, r.text
                    items = r.json()["items"]
                    stored += [w["id"] for w in items]
                    if len(items) < 100:
                        break
                    page += 1
            assert len(stored) == len(set(stored))
            missing = set(acknowledged) - set(stored)
            assert not missing, f"{len(missing)} acknowledged submissions lost: {sorted(missing)[:10]}"
            print(f"{len(acknowledged)} acknowledged, {len(stored)} stored "
                  f"({len(stored) - len(acknowledged)} written but cut off before their answer)")
        finally:
            stop_server(again)
