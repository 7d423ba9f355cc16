"""`corral workloads export`: the Workloads table as CSV through the CLI (a real subprocess
against `corral serve`), with the list's filters, to standard output or a file."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from tests.e2e.conftest import LiveServer, failed, ok
from tests.e2e.test_cli import new_project


def test_export_writes_every_matching_workload_as_csv(live_server: LiveServer, tmp_path: Path):
    admin = live_server.cli(tmp_path / "config.json", token=live_server.admin_token)
    new_project(admin, "exports")
    for name in ("exp-b", "exp-a", "x-cmd"):
        ok(admin.invoke("workloads", "submit", "-t", "custom", "-n", name, "-p", "exports",
                        "--command", "true", "--cpu", "100m", "--memory", "16Mi", "--json"))
    out = ok(admin.run("workloads", "export", "-p", "exports", "--sort", "name"))
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["name"] for r in rows] == ["exp-a", "exp-b", "x-cmd"]
    assert {r["project"] for r in rows} == {"exports"} and rows[0]["cpu_cores"] == "0.1"
    # To a file, filtered like `ls`; nothing left beside it.
    target = tmp_path / "out" / "w.csv"
    target.parent.mkdir()
    done = admin.run("workloads", "export", "-p", "exports", "--name", "exp-b", "-o", str(target))
    assert done.returncode == 0 and "wrote" in done.stderr, done.stderr
    assert [r["name"] for r in csv.DictReader(target.open())] == ["exp-b"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["w.csv"]
    # A project the caller cannot see: an error, and no file.
    missing = tmp_path / "none.csv"
    refused = admin.run("workloads", "export", "-p", "no-such-project", "-o", str(missing))
    assert failed(refused) and "not found" in (refused.stderr + refused.stdout) and not missing.exists()
    assert json.loads(ok(admin.invoke("workloads", "ls", "-p", "exports", "--json")))["total"] == 3
