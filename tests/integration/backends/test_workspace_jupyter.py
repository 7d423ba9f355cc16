"""A JupyterLab workspace through the local backend answers at its base URL ``/`` (the
control plane serves it on the workload's own origin, w<id>.<apps domain>), to whoever
presents the workload's service token (the proxy) and to nobody else on the host."""

from __future__ import annotations

import re
import httpx

from corral.backends.local import LocalBackend
from corral.backends.recipes import ComponentRef, build_launches
from corral.domain.statuses import ComponentStatus as S

from .conftest import Watcher, alive, group_pids


TOKEN = "service-token-of-workload-42"
AS_PROXY = {"Authorization": f"Bearer {TOKEN}"}


def test_jupyterlab_workspace_runs_and_answers_at_its_base_url(backend: LocalBackend, watcher: Watcher):
    server, endpoint = build_launches(
        workload_id=42, project="proj", workload_type="workspace",
        spec={"type": "workspace", "name": "notebook", "project": "proj"},
        components=[ComponentRef(1, "server", cpu_millicores=1000, memory_bytes=2 * 2**30),
                    ComponentRef(2, "endpoint")],
        work_root=backend.work.root, secret_env={"CORRAL_SERVICE_TOKEN": TOKEN},
    )
    backend.start(server)
    backend.start(endpoint)
    pending = watcher.wait(1, lambda o: "waiting for" in o.reason, timeout=20)
    assert pending.status is S.PENDING and "/api" in pending.reason
    running = watcher.wait(1, S.RUNNING, timeout=60)
    assert running.endpoint_url is not None and re.fullmatch(r"http://127\.0\.0\.1:\d+/", running.endpoint_url)
    # Another workload on this host finds the port: without the token it can run nothing.
    assert httpx.get(running.endpoint_url + "api/status", timeout=10).status_code == 403
    assert httpx.post(running.endpoint_url + "api/kernels", timeout=10).status_code == 403
    assert httpx.get(running.endpoint_url + "api/status", headers={"Authorization": "Bearer guess"},
                     timeout=10).status_code == 403
    status = httpx.get(running.endpoint_url + "api/status", headers=AS_PROXY, timeout=10)
    assert status.status_code == 200 and "started" in status.json()
    lab = httpx.get(running.endpoint_url + "lab", headers=AS_PROXY, timeout=10)
    assert lab.status_code == 200 and "JupyterLab" in lab.text
    assert '"baseUrl": "/"' in lab.text
    # Jupyter's DNS-rebinding defence is on: the proxy must send Host: 127.0.0.1:<port>.
    # (Its XSRF check applies to cookie sign-ins only; with the token, cross-site requests are
    # the proxy's to refuse: a foreign Origin, and a credential cookie that is SameSite=Lax.)
    assert httpx.get(running.endpoint_url + "api/status", headers={"Host": "corral.example.org", **AS_PROXY},
                     timeout=10).status_code == 403
    created = httpx.post(running.endpoint_url + "api/contents", json={"type": "notebook"}, headers=AS_PROXY,
                         timeout=10)
    assert created.status_code == 201, created.text
    notebook = backend.work.project_dir("proj") / "workspaces" / "42" / "Untitled.ipynb"
    assert notebook.is_file()
    run_as = backend.identities.for_project("proj")
    assert run_as is None or notebook.stat().st_uid == run_as.uid  # written by the project's user
    pgid = backend.inspect(1)["status"]["pgid"]
    pids = group_pids(pgid)
    backend.stop(1, grace_s=10)
    backend.stop(2)
    watcher.wait(1, S.DELETED, timeout=20)
    watcher.wait(2, S.DELETED)
    assert not any(alive(pid) for pid in pids)
