"""A time limit from the CLI: ``--time-limit`` (or ``--set time_limit=...``), refused with the
API's message naming the field, shown by ``workloads get``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli, LiveServer, failed, ok


@pytest.fixture
def admin(live_server: LiveServer, tmp_path: Path) -> Cli:
    return live_server.cli(tmp_path / "config.json", token=live_server.admin_token)


def test_time_limit_from_the_cli(live_server: LiveServer, admin: Cli) -> None:
    project = "limit-e2e"
    ok(admin.invoke("projects", "create", project))
    ok(admin.invoke("quotas", "set", project, "local", "--gpu", "0", "--cpu", "0", "--memory", "0", "--unbounded"))
    made = json.loads(ok(admin.invoke("workloads", "submit", "-t", "training", "-n", "limited", "-p", project,
                                      "--set", "dataset=d", "--command", "sleep 1", "--time-limit", "1h30m",
                                      "--json")))
    shown = ok(admin.invoke("workloads", "get", str(made["id"])))
    assert "Time limit" in shown and "1h30m" in shown
    assert json.loads(ok(admin.invoke("workloads", "get", str(made["id"]), "--json")))["spec"]["time_limit"] == 5400
    other = json.loads(ok(admin.invoke("workloads", "submit", "-t", "custom", "-n", "set-limit", "-p", project,
                                       "--command", "sleep 1", "--set", "time_limit=90m", "--json")))
    assert json.loads(ok(admin.invoke("workloads", "get", str(other["id"]), "--json")))["time_limit"] == "1h30m"
    message = failed(admin.invoke("workloads", "submit", "-t", "custom", "-n", "bad", "-p", project,
                                  "--command", "x", "--time-limit", "a while"), 1)
    assert message.startswith("Error: time_limit: 'a while' is not a duration (examples: 2h, 90m")
