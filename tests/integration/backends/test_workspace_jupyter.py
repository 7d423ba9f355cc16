"""A JupyterLab workspace through the local backend answers under /proxy/<workload id>/."""

from __future__ import annotations

from pathlib import Path

import httpx

from corral.backends.local import LocalBackend
from corral.backends.recipes import ComponentRef, build_launches
from corral.domain.statuses import ComponentStatus as S

from .conftest import Watcher, alive, group_pids


def test_jupyterlab_workspace_runs_and_answers_at_its_base_url(backend: LocalBackend, watcher: Watcher,
                                                               tmp_path: Path):
    server, endpoint = build_launches(
        workload_id=42, project="proj", workload_type="workspace",
        spec={"type": "workspace", "name": "notebook", "project": "proj"},
        components=[ComponentRef(1, "server", cpu_millicores=1000, memory_bytes=2 * 2**30),
                    ComponentRef(2, "endpoint")],
        data_dir=tmp_path / "data",
    )
    backend.start(server)
    backend.start(endpoint)
    pending = watcher.wait(1, lambda o: "waiting for" in o.reason, timeout=20)
    assert pending.status is S.PENDING and "/proxy/42/api" in pending.reason
    running = watcher.wait(1, S.RUNNING, timeout=60)
    assert running.endpoint_url is not None and running.endpoint_url.endswith("/proxy/42/")
    status = httpx.get(running.endpoint_url + "api/status", timeout=10)
    assert status.status_code == 200 and "started" in status.json()
    lab = httpx.get(running.endpoint_url + "lab", timeout=10)
    assert lab.status_code == 200 and "JupyterLab" in lab.text
    assert '"baseUrl": "/proxy/42/"' in lab.text
    # Jupyter's defences are on: the proxy must send Host: 127.0.0.1:<port> and the _xsrf cookie.
    assert httpx.get(running.endpoint_url + "api/status", headers={"Host": "corral.example.org"},
                     timeout=10).status_code == 403
    with httpx.Client(timeout=10) as browser:
        assert browser.post(running.endpoint_url + "api/contents", json={"type": "notebook"}).status_code == 403
        browser.get(running.endpoint_url + "lab")
        xsrf = browser.cookies.get("_xsrf")
        assert xsrf
        created = browser.post(running.endpoint_url + "api/contents", json={"type": "notebook"},
                               headers={"X-XSRFToken": xsrf})
        assert created.status_code == 201
    # Outside the base URL there is nothing: the proxy must keep the prefix.
    assert httpx.get(running.endpoint_url.replace("/proxy/42/", "/api/status"), timeout=10).status_code == 404
    assert (tmp_path / "data" / "workspaces" / "proj" / "42" / "Untitled.ipynb").is_file()
    pgid = backend.inspect(1)["status"]["pgid"]
    pids = group_pids(pgid)
    backend.stop(1, grace_s=10)
    backend.stop(2)
    watcher.wait(1, S.DELETED, timeout=20)
    watcher.wait(2, S.DELETED)
    assert not any(alive(pid) for pid in pids)
