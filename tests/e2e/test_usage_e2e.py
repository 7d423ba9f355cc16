"""Use over time end to end (issue 14): a real workload on `corral serve`'s built-in local
cluster burns a core and holds memory; its samples arrive through the real agent and API
with plausible values, and the project's quota use over time follows what it holds."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import LiveServer, make_database, ok, start_server, stop_server
from tests.e2e.test_agent_e2e import _client, _processes_with, _submit, _watch

# One process: 300 MiB touched (resident), then a busy loop; the marker finds it in /proc.
BURN = ("/usr/bin/python3 -c \"b = bytearray(300 * 2**20)\n"
        "for i in range(0, len(b), 4096): b[i] = 1\n"
        "while True: pass\" {marker}")
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """The process's own CPU time, read here, independently of Corral."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def sampling_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                    _postgres_databases: ExitStack) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp(f"usage-{request.param}")
    database = make_database(request.param, root / "data", _postgres_databases)
    server = start_server(database, root / "server.log",
                          env_extra={"CORRAL_USAGE_INTERVAL_S": "1", "CORRAL_HISTORY_INTERVAL_S": "1"})
    yield server
    stop_server(server)


def _until(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_a_busy_workload_reports_cpu_and_memory_through_the_agent(sampling_server: LiveServer):
    client = _client(sampling_server)
    marker = f"burn-{time.time_ns()}"
    wid = _submit(client, name="burner", command=BURN.format(marker=marker), resources={"cpu": "2", "memory": "1Gi"})
    _watch(client, wid, {"Running"})
    [pid] = _until(lambda: [p for p in _processes_with(marker)  # python, not a shell that runs it
                            if Path(f"/proc/{p}/cmdline").read_bytes().startswith(b"/usr/bin/python3")],
                   10, "the workload's process is not to be found")

    def usage() -> dict:
        [comp] = client.get(f"/api/v1/workloads/{wid}/usage").json()["components"]
        return comp

    _until(lambda: (usage()["memory"] or [0])[-1] >= 300 << 20, 30, "no sample with the workload's memory in 30 s")
    # What the process burns over a few samples, measured here, against what Corral says
    # (this host may be busy: a busy loop gets what the other processes leave it).
    t1, c1 = time.time(), _cpu_seconds(pid)
    time.sleep(4.2)
    t2, c2 = time.time(), _cpu_seconds(pid)
    comp = usage()
    actual = (c2 - c1) / (t2 - t1) * 1000  # millicores
    reported = [cpu for t, cpu in zip(comp["t"], comp["cpu"]) if t1 + 1 <= t <= t2]
    assert len(reported) >= 2, comp
    mean = sum(reported) / len(reported) * 1000  # the API says cores
    assert actual > 200, actual  # it does burn
    assert abs(mean - actual) <= 0.3 * actual + 50, (mean, actual, reported)
    assert comp["memory"][-1] >= 300 << 20 and comp["memory"][-1] < 1 << 30, comp  # what it holds, Python's own
    assert comp["gpu_utilization"][-1] is None and comp["gpu_memory"][-1] is None  # no GPUs here
    gaps = [b - a for a, b in zip(comp["t"], comp["t"][1:])]
    assert all(0.5 < g < 5 for g in gaps), gaps  # every CORRAL_USAGE_INTERVAL_S (1 s)

    # The quota use of its project over time, sampled on the agent's heartbeats (10 s).
    until = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()

    def held() -> dict | None:
        history = client.get("/api/v1/projects/default/quota-history", params={"until": until}).json()
        local = [c for c in history["clusters"] if c["cluster"] == "local"]
        return local[0] if local and 2 in local[0]["cpu"]["used"] else None

    local = _until(held, 25, "the quota history never shows the workload's 2 cores")
    assert 1 << 30 in local["memory"]["used"]

    assert client.delete(f"/api/v1/workloads/{wid}").status_code == 202
    _watch(client, wid, {"Deleted"})
    count = len(client.get(f"/api/v1/workloads/{wid}/usage").json()["components"][0]["t"])
    time.sleep(2.5)
    after = client.get(f"/api/v1/workloads/{wid}/usage").json()["components"][0]["t"]
    assert len(after) == count  # nothing is sampled once it is gone


def test_another_projects_member_cannot_read_the_series(sampling_server: LiveServer, tmp_path):
    admin = _client(sampling_server)
    wid = _submit(admin, name="private", command="sleep 30")
    assert admin.post("/api/v1/projects", json={"name": "other"}).status_code == 201
    created = admin.post("/api/v1/users", json={"email": "eve@example.com", "role": "member"})
    assert created.status_code == 201, created.text
    assert admin.post("/api/v1/projects/other/members", json={"email": "eve@example.com"}).status_code == 201
    token = ok(sampling_server.cli(tmp_path / "config.toml").invoke("tokens", "create", "eve@example.com")).strip()
    eve = httpx.Client(base_url=sampling_server.url, headers={"Authorization": f"Bearer {token}"})
    assert eve.get(f"/api/v1/workloads/{wid}/usage").status_code == 404
    assert eve.get("/api/v1/projects/default/quota-history").status_code == 404
    assert eve.get("/api/v1/clusters/local/allocation-history").status_code == 403
    assert admin.delete(f"/api/v1/workloads/{wid}").status_code == 202
