"""Who workloads run as, through the real server: per-project users when Corral runs as
root, and in shared mode the plain warning at start, in the API and on the Clusters page."""

from __future__ import annotations

import os
import re
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from corral.backends.identity import NOT_ISOLATED, user_name_for
from corral.backends.local.host import probe_limits
from tests.e2e.conftest import make_database, start_server, stop_server

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="per-project users need root (CI runs as root)")


def _who_runs(client: httpx.Client) -> str:
    spec = {"type": "custom", "name": "whoami", "project": "default", "command": 'id -un; echo "$HOME"',
            "resources": {"cpu": "100m", "memory": "64Mi"}}
    wid = client.post("/api/v1/workloads", json=spec).json()["id"]
    deadline = time.monotonic() + 30
    while (detail := client.get(f"/api/v1/workloads/{wid}").json())["status"] not in ("Complete", "Failed"):
        assert time.monotonic() < deadline
        assert "not enforced" not in detail["status_reason"]  # said once, on the cluster
        time.sleep(0.1)
    assert "not enforced" not in str(detail["components"])
    return client.get(f"/api/v1/workloads/{wid}/logs").text


def _clusters_page(server) -> str:  # type: ignore[no-untyped-def]
    browser = httpx.Client(base_url=server.url, timeout=30)
    form = browser.get("/sign-in")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    password = (server.database.data_dir / "admin-password").read_text().strip()
    signed_in = browser.post("/sign-in", data={"email": "admin@localhost", "password": password, "csrf_token": csrf})
    assert signed_in.status_code == 303, signed_in.text
    return browser.get("/clusters").text


@pytest.mark.parametrize("mode", ["auto", "shared"])
def test_workloads_run_as_their_projects_user_or_corral_says_they_are_not_isolated(mode: str, tmp_path: Path):
    with ExitStack() as cleanup:
        database = make_database("sqlite", tmp_path / "data", cleanup)
        server = start_server(database, tmp_path / "server.log", env_extra={"CORRAL_WORKLOAD_USERS": mode})
        try:
            client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token}"},
                                  timeout=30)
            deadline = time.monotonic() + 20
            while not (cluster := client.get("/api/v1/clusters/local").json()).get("isolation"):
                assert time.monotonic() < deadline, cluster
                time.sleep(0.1)
            user, home = _who_runs(client).split()
            page = _clusters_page(server)
            if mode == "auto":
                assert user == user_name_for("default") and home.endswith("/default")
                assert cluster["isolation"].startswith("each project's workloads run as an OS user of their own")
                assert NOT_ISOLATED not in server.log()
            else:
                assert user == "root"
                assert cluster["isolation"].startswith(NOT_ISOLATED)
                assert f"Cluster local: {NOT_ISOLATED}" in server.log()  # said at start
            # Limits that cannot be enforced on this host are said once, on the cluster's line.
            unenforced = probe_limits(True, None, "e2e-isolation")
            assert ("limits are not enforced on this host: " in cluster["isolation"]) == bool(unenforced), cluster
            assert cluster["isolation"].replace("'", "&#39;") in page  # and on the Clusters page
        finally:
            stop_server(server)
