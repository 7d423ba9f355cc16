"""`corral workloads delete` with several ids or filters, against `corral serve` running real
processes on its local cluster; and the client's delete_workloads."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from corral.client import BulkDeleteResult, CorralAPIError, CorralClient
from tests.e2e.conftest import Cli, LiveServer, failed, ok
from tests.e2e.test_cli import new_project


@pytest.fixture
def admin(live_server: LiveServer, tmp_path: Path) -> Cli:
    return live_server.cli(tmp_path / "config.json", token=live_server.admin_token)


def _sleepers(admin: Cli, project: str, n: int, prefix: str) -> list[int]:
    ids = []
    for i in range(n):
        created = json.loads(ok(admin.invoke("workloads", "submit", "-t", "custom", "-n", f"{prefix}-{i}", "-p",
                                             project, "--command", "sleep 300", "--cpu", "100m", "--memory", "16Mi",
                                             "--json")))
        ids.append(created["id"])
    return ids


def _statuses(client: CorralClient, ids: list[int]) -> dict[int, str]:
    return {i: client.get_workload(i).status for i in ids}


def _wait(client: CorralClient, ids: list[int], status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        now = _statuses(client, ids)
        if set(now.values()) == {status}:
            return
        assert time.monotonic() < deadline, f"not all {status}: {now}"
        time.sleep(0.2)


def test_delete_by_filter_asks_once_and_stops_the_processes(live_server: LiveServer, admin: Cli) -> None:
    project = "bulk-e2e"
    new_project(admin, project)
    sleepers = _sleepers(admin, project, 4, "sleeper")
    with CorralClient(live_server.url, live_server.admin_token) as client:
        _wait(client, sleepers, "Running")
        kept = _sleepers(admin, project, 1, "kept")
        _wait(client, kept, "Running")

        # A dry run lists what it would touch, and touches nothing.
        dry = ok(admin.invoke("workloads", "delete", "-p", project, "--status", "Running", "--name", "sleeper",
                              "--dry-run"))
        for text in ("sleeper-0", "sleeper-3", "would delete", "Dry run, nothing changed: 4 would be deleted"):
            assert text in dry, (text, dry)
        assert "kept-0" not in dry
        assert set(_statuses(client, sleepers + kept).values()) == {"Running"}

        # One confirmation, listing them; "no" keeps them all.
        refused = admin.invoke("workloads", "delete", "-p", project, "--name", "sleeper", input="n\n")
        assert refused.exit_code != 0 and "Delete 4 workloads?" in refused.stderr
        assert "sleeper-2" in refused.stdout
        assert set(_statuses(client, sleepers).values()) == {"Running"}

        confirmed = ok(admin.invoke("workloads", "delete", "-p", project, "--name", "sleeper", input="y\n"))
        assert "4 deleted" in confirmed and "Deleting" in confirmed
        # The agent stops the processes and reports them gone: Deleted.
        _wait(client, sleepers, "Deleted", timeout=60)
        assert client.get_workload(kept[0]).status == "Running"

        # Again: nothing left to do, and it says why.
        again = ok(admin.invoke("workloads", "delete", *map(str, sleepers), "--yes"))
        assert "4 already deleted" in again
        client.delete_workloads(kept)


def test_delete_by_ids_reports_each_and_exits_1_for_unknown_ids(live_server: LiveServer, admin: Cli,
                                                                 tmp_path: Path) -> None:
    project = "bulk-ids"
    new_project(admin, project)
    new_project(admin, "bulk-other")
    ids = _sleepers(admin, project, 2, "job")
    theirs = _sleepers(admin, "bulk-other", 1, "hidden-name")
    ok(admin.invoke("users", "create", "ned@example.com"))
    token = json.loads(ok(admin.invoke("tokens", "create", "ned@example.com", "--json")))["token"]
    ok(admin.invoke("projects", "add-member", project, "ned@example.com"))
    ned = live_server.cli(tmp_path / "ned.json", token=token)

    result = ned.run("workloads", "delete", *map(str, ids + theirs), "999999", "--yes", "--json")
    assert result.returncode == 1
    body = json.loads(result.stdout)  # --json: stdout is the JSON alone
    assert [(i["id"], i["result"]) for i in body["items"]] == [
        (ids[0], "done"), (ids[1], "done"), (theirs[0], "not_found"), (999999, "not_found")]
    assert "hidden-name" not in result.stdout and "bulk-other" not in result.stdout
    assert body["counts"] == {"done": 2, "already_deleting": 0, "already_deleted": 0, "not_found": 2}

    table = ned.invoke("workloads", "delete", *map(str, ids), "999999", "--yes")
    assert table.exit_code == 1 and "already" in table.stdout and "not found" in table.stdout

    # Usage errors: nothing named, or ids and filters together.
    assert "at least one filter" in failed(ned.invoke("workloads", "delete"), 2)
    assert "not both" in failed(ned.invoke("workloads", "delete", "1", "-p", project), 2)
    with CorralClient(live_server.url, live_server.admin_token) as client:
        assert client.get_workload(theirs[0]).status in ("Pending", "Running")
        preview = client.delete_workloads(project="bulk-other", statuses=["running", "Pending"], dry_run=True)
        assert isinstance(preview, BulkDeleteResult) and [i.id for i in preview.items] == theirs
        assert preview.items[0].result == "done" and preview.dry_run
        with pytest.raises(CorralAPIError) as refused:
            client.delete_workloads(name="")
        assert refused.value.status_code == 422 and "names no criterion" in str(refused.value)
        assert client.delete_workloads(theirs).counts["done"] == 1
