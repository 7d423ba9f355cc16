"""`corral serve` admits what fits: submit over quota, see why it waits and where it stands
in the queue, free capacity, see it admitted, all over HTTP against the real server."""

from __future__ import annotations

import time

import httpx

from tests.e2e.conftest import ok


def _wait_for(fetch, predicate, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if predicate(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_over_quota_waits_then_is_admitted_when_capacity_frees(live_server, tmp_path):
    client = httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {live_server.admin_token}"})
    quota = client.get("/api/v1/projects/default/quotas/local").json()
    cpu_limit = round(quota["limit"]["cpu"] * 1000)  # the API says cores
    assert cpu_limit >= 1000, quota

    def submit(name: str, cpu: int) -> int:
        response = client.post("/api/v1/workloads", json={
            "type": "custom", "name": name, "project": "default", "command": "sleep 1",
            "resources": {"cpu": f"{cpu}m", "memory": "64Mi"}})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def detail(wid: int) -> dict:
        return client.get(f"/api/v1/workloads/{wid}").json()

    big = submit("big", cpu_limit - 500)
    assert _wait_for(lambda: detail(big), lambda d: d["admitted_at"])["admitted_at"], "fits: admitted at once"
    waiting_id = submit("waits", 1000)
    waiting = _wait_for(lambda: detail(waiting_id), lambda d: d["status_reason"].startswith("waiting for quota"))
    assert waiting["status"] == "Pending" and waiting["admitted_at"] is None
    assert waiting["status_reason"].startswith("waiting for quota: cpu"), waiting["status_reason"]
    assert waiting["queue_position"] == {"position": 1, "of": 1}
    assert waiting["status_reason"].endswith("; position 1 of 1")
    listed = client.get("/api/v1/workloads", params={"project": "default", "status": "Pending"}).json()
    assert any(w["id"] == waiting_id and w["status_reason"] == waiting["status_reason"] for w in listed["items"])
    assert any(e["kind"] == "waiting" and e["message"] == waiting["status_reason"] for e in waiting["events"])
    cli = live_server.cli(tmp_path / "config.json", token=live_server.admin_token)
    table = ok(cli.invoke("workloads", "ls", "-p", "default", "--status", "Pending"))
    assert "waiting for quota: cpu" in table and "position 1" in table, table  # (the column wraps)
    shown = ok(cli.invoke("workloads", "get", str(waiting_id)))
    assert "Queue position" in shown and "1 of 1" in shown and "waiting for quota" in shown, shown

    started = time.monotonic()
    assert client.delete(f"/api/v1/workloads/{big}").status_code == 202  # frees its quota at once
    admitted = _wait_for(lambda: detail(waiting_id), lambda d: d["admitted_at"])
    assert admitted["admitted_at"], admitted
    assert time.monotonic() - started < 5, "a deletion wakes the scheduler; no need to wait for its timer"
    assert "admitted" in [e["kind"] for e in admitted["events"]]  # (it may be running already)
    client.delete(f"/api/v1/workloads/{waiting_id}")
