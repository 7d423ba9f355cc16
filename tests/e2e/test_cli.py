"""The CLI and the HTTP client against the real server (`corral serve` in a subprocess).

Runs on SQLite, and on PostgreSQL too when CORRAL_TEST_POSTGRES_URL is set.
"""

from __future__ import annotations

import json
import re
import time
import stat
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from corral.client import (
    Cluster,
    ClusterCreated,
    Component,
    CorralAPIError,
    CorralClient,
    CorralConnectionError,
    Member,
    Project,
    Quota,
    TokenCreated,
    User,
    Workload,
    WorkloadCreated,
    WorkloadDetail,
    WorkloadPage,
    WorkloadStats,
)
from corral.db.engine import make_engine
from corral.domain.names import WORKLOAD_NAME_RULE
from corral.services.users import authenticate
from tests.e2e.conftest import Cli, LiveServer, failed, free_port, make_database, ok, start_server, stop_server


@pytest.fixture
def admin(live_server: LiveServer, tmp_path: Path) -> Cli:
    """The CLI as the bootstrap admin (CORRAL_SERVER / CORRAL_TOKEN)."""
    return live_server.cli(tmp_path / "config.json", token=live_server.admin_token)


def as_json(result: Any) -> Any:
    return json.loads(ok(result))


def new_project(admin: Cli, name: str, *limit: str) -> None:
    """A project on the built-in cluster. Bootstrap guarantees all of it to `default`, so
    this one guarantees nothing and borrows (unbounded, or up to ``limit`` options)."""
    ok(admin.invoke("projects", "create", name, "--description", f"{name} e2e"))
    ok(admin.invoke("quotas", "set", name, "local", "--gpu", "0", "--cpu", "0", "--memory", "0",
                    *(limit or ("--unbounded",))))


# --------------------------------------------------------------------------- without a server

@pytest.fixture(params=["sqlite", "postgres"])
def database_kind(request: pytest.FixtureRequest) -> str:
    return request.param


def test_users_and_tokens_bootstrap_without_a_server(database_kind: str, tmp_path: Path,
                                                      _postgres_databases: ExitStack) -> None:
    database = make_database(database_kind, tmp_path / "data", _postgres_databases)
    cli = Cli({"CORRAL_CONFIG": str(tmp_path / "config.json"), **database.env})

    # Nothing works on a database without its schema, and the error says what to do.
    assert "corral db upgrade" in failed(cli.invoke("users", "create", "root@example.com"), 1)
    current = as_json(cli.invoke("db", "current", "--json"))
    assert current["current"] is None and current["up_to_date"] is False

    upgraded = json.loads(ok(cli.run("db", "upgrade", "--json")))
    assert upgraded["from"] is None and upgraded["to"] == upgraded["head"] is not None
    assert as_json(cli.invoke("db", "current", "--json"))["up_to_date"] is True
    assert "up to date" in ok(cli.invoke("db", "upgrade"))

    created = json.loads(ok(cli.run("users", "create", "Root@Example.com", "--name", "Root", "--admin", "--json")))
    assert created["email"] == "root@example.com" and created["role"] == "admin"
    assert created["display_name"] == "Root"
    assert "member" in ok(cli.invoke("users", "create", "dev@example.com"))
    assert "already exists" in failed(cli.invoke("users", "create", "root@example.com"), 1)
    listed = as_json(cli.invoke("users", "list", "--json"))
    assert [(u["email"], u["role"]) for u in listed] == [("dev@example.com", "member"),
                                                         ("root@example.com", "admin")]
    assert "root@example.com" in ok(cli.invoke("users", "list"))

    # The token alone on stdout (for `TOKEN=$(corral tokens create ...)`), shown once.
    result = cli.run("tokens", "create", "root@example.com", "--name", "ci", "--expires-in-days", "7")
    token = ok(result).strip()
    assert ok(result) == token + "\n" and token.startswith("crl_")
    assert "only this once" in result.stderr and token not in result.stderr
    assert "not found" in failed(cli.invoke("tokens", "create", "nobody@example.com"), 1)

    engine = make_engine(database.url or f"sqlite:///{database.data_dir / 'corral.db'}", pool_size=1)
    try:
        principal = authenticate(engine, token)
        assert principal is not None and principal.email == "root@example.com" and principal.is_admin
        tokens = as_json(cli.invoke("tokens", "list", "root@example.com", "--json"))
        assert [t["name"] for t in tokens] == ["ci"] and tokens[0]["expires_at"] is not None
        assert "token" not in tokens[0] and token not in ok(cli.invoke("tokens", "list", "root@example.com"))
        revoked = as_json(cli.invoke("tokens", "revoke", "root@example.com", str(tokens[0]["id"]), "--json"))
        assert revoked["revoked"] is True
        assert authenticate(engine, token) is None
        # Someone else's token id is not found for this user.
        assert "not found" in failed(cli.invoke("tokens", "revoke", "dev@example.com", str(tokens[0]["id"])), 1)
    finally:
        engine.dispose()
    if database_kind == "postgres":
        return  # the server on PostgreSQL is covered below

    # A server started on this database keeps the admin made here (no admin@localhost, no
    # token file), still creates the local cluster and default project, and says how to log in.
    second = ok(cli.invoke("tokens", "create", "root@example.com")).strip()
    server = start_server(database, tmp_path / "server.log")
    try:
        assert "corral tokens create root@example.com" in server.log() and second not in server.log()
        assert not server.token_file.exists()
        assert "as root@example.com (admin)" in ok(cli.invoke("login", "--server", server.url, "--token", second))
        assert [p["name"] for p in as_json(cli.invoke("projects", "ls", "--json"))] == ["default"]
        assert [u["email"] for u in as_json(cli.invoke("users", "list", "--json"))] == ["dev@example.com",
                                                                                       "root@example.com"]
    finally:
        stop_server(server)


# --------------------------------------------------------------------------- login

def test_serve_tells_how_to_log_in_and_login_stores_the_token(live_server: LiveServer, tmp_path: Path) -> None:
    log = live_server.log()
    assert f"corral login --server {live_server.url} --token-file {live_server.token_file}" in log
    assert live_server.admin_token not in log
    assert stat.S_IMODE(live_server.token_file.stat().st_mode) == 0o600

    config = tmp_path / "cfg" / "config.json"
    cli = live_server.cli(config)
    assert "not logged in" in failed(cli.invoke("whoami"), 1)

    result = cli.run("login", "--server", live_server.url + "/", "--token-file", str(live_server.token_file))
    assert f"Logged in to {live_server.url} as admin@localhost (admin)" in ok(result)
    assert live_server.admin_token not in result.stdout + result.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert json.loads(config.read_text()) == {"server": live_server.url, "token": live_server.admin_token}

    me = as_json(cli.invoke("whoami", "--json"))
    assert me["email"] == "admin@localhost" and me["role"] == "admin" and me["server"] == live_server.url

    # CORRAL_SERVER / CORRAL_TOKEN override the file.
    bad = cli.with_env(CORRAL_TOKEN="crl_not-a-real-token")
    assert "invalid, expired or revoked token" in failed(bad.invoke("whoami"), 1)
    elsewhere = cli.with_env(CORRAL_SERVER=f"http://127.0.0.1:{free_port()}")
    assert "cannot reach" in failed(elsewhere.invoke("whoami"), 1)

    # A refused token is not stored.
    refused = cli.invoke("login", "--server", live_server.url, "--token", "crl_wrong")
    assert "refused the token" in failed(refused, 1)
    assert json.loads(config.read_text())["token"] == live_server.admin_token
    # Prompted for when not given.
    prompted = cli.invoke("login", "--server", live_server.url, input=live_server.admin_token + "\n")
    assert "Logged in" in ok(prompted)

    assert "Logged out" in ok(cli.invoke("logout"))
    assert "token" not in (json.loads(config.read_text()) if config.exists() else {})
    assert "not logged in" in failed(cli.invoke("workloads", "ls"), 1)
    assert "Not logged in" in ok(cli.invoke("logout"))


# --------------------------------------------------------------------------- clusters, projects, quotas

def test_clusters_projects_and_quotas(live_server: LiveServer, admin: Cli) -> None:
    clusters = as_json(admin.invoke("clusters", "ls", "--json"))
    local = next(c for c in clusters if c["name"] == "local")
    # `corral serve` beats for the built-in cluster, so it is healthy at once.
    assert local["status"] == "healthy" and local["kind"] == "local" and local["capacity"]["cpu"] > 0
    assert len(local["nodes"]) == 1
    table = ok(admin.invoke("clusters", "ls"))
    assert "local" in table and "healthy" in table
    assert "healthy" in ok(admin.invoke("clusters", "get", "local"))

    created = admin.invoke("clusters", "create", "gpu-x", "--kind", "kubernetes", "--gpu", "8", "--cpu", "64",
                           "--memory", "512Gi")
    agent_token = ok(created).strip()
    assert agent_token.startswith("crla_") and agent_token not in created.stderr
    got = as_json(admin.invoke("clusters", "get", "gpu-x", "--json"))
    assert got["status"] == "verifying" and got["capacity"]["gpu"] == 8 and got["capacity"]["memory"] == 512 * 2**30
    assert "already exists" in failed(admin.invoke("clusters", "create", "gpu-x", "--kind", "kubernetes"), 1)

    ok(admin.invoke("projects", "create", "vision", "-d", "Vision team", "--preemption-policy", "never"))
    assert "vision" in [p["name"] for p in as_json(admin.invoke("projects", "ls", "--json"))]
    project = as_json(admin.invoke("projects", "get", "vision", "--json"))
    assert project["preemption_policy"] == "never" and project["quotas"] == []

    quota = as_json(admin.invoke("quotas", "set", "vision", "gpu-x", "--gpu", "4", "--cpu", "500m",
                                 "--memory", "64Gi", "--limit-gpu", "6", "--limit-memory", "unbounded", "--json"))
    assert quota["guaranteed"] == {"gpu": 4, "cpu": 0.5, "memory": 64 * 2**30, "ephemeral_storage": 0}
    assert quota["limit"] == {"gpu": 6, "cpu": 0.5, "memory": None, "ephemeral_storage": 0}
    hard = as_json(admin.invoke("quotas", "set", "vision", "gpu-x", "--gpu", "2", "--cpu", "4", "--memory", "8Gi",
                                "--hard", "--json"))
    assert hard["limit"] == hard["guaranteed"]
    unbounded = as_json(admin.invoke("quotas", "set", "vision", "gpu-x", "--gpu", "2", "--cpu", "4",
                                     "--memory", "8Gi", "--unbounded", "--json"))
    assert set(unbounded["limit"].values()) == {None}
    assert failed(admin.invoke("quotas", "set", "vision", "gpu-x", "--gpu", "1", "--cpu", "1", "--memory", "1Gi",
                               "--unbounded", "--limit-gpu", "2"), 2)
    assert "no-such" in failed(admin.invoke("quotas", "set", "vision", "no-such", "--gpu", "1", "--cpu", "1",
                                            "--memory", "1Gi"), 1)
    listed = as_json(admin.invoke("quotas", "ls", "vision", "--json"))
    assert [q["cluster"] for q in listed] == ["gpu-x"]
    table = ok(admin.invoke("quotas", "ls", "vision"))
    assert "gpu-x" in table and "8Gi" in table and "unbounded" in table

    ok(admin.invoke("users", "create", "ann@example.com"))  # direct on the database, beside the server
    assert "ann@example.com is a member of vision" in ok(admin.invoke("projects", "add-member", "vision",
                                                                      "ann@example.com"))
    members = as_json(admin.invoke("projects", "members", "vision", "--json"))
    assert [m["email"] for m in members] == ["ann@example.com"]
    ok(admin.invoke("projects", "remove-member", "vision", "ann@example.com"))
    assert as_json(admin.invoke("projects", "members", "vision", "--json")) == []
    assert "not a member" in failed(admin.invoke("projects", "remove-member", "vision", "ann@example.com"), 1)


def test_quotas_set_reads_humane_units_and_keeps_what_is_not_given(live_server: LiveServer, admin: Cli) -> None:
    ok(admin.invoke("clusters", "create", "units-x", "--kind", "kubernetes", "--gpu", "8", "--cpu", "64",
                    "--memory", "512Gi", "--ephemeral-storage", "1Ti"))
    ok(admin.invoke("projects", "create", "units"))
    gib = 2**30

    # Through the console script: `--limit-cpu 2` is 2 cores (2000m), not 2,000 cores.
    result = admin.run("quotas", "set", "units", "units-x", "--gpu", "1", "--cpu", "1", "--memory", "1Gi",
                       "--ephemeral-storage", "10Gi", "--limit-cpu", "2", "--limit-memory", "16Gi", "--json")
    quota = json.loads(ok(result))
    assert quota["guaranteed"] == {"gpu": 1, "cpu": 1, "memory": gib, "ephemeral_storage": 10 * gib}
    assert quota["limit"] == {"gpu": 1, "cpu": 2, "memory": 16 * gib, "ephemeral_storage": 10 * gib}
    table = ok(admin.invoke("quotas", "ls", "units"))
    cpu_row = next(line for line in table.splitlines() if "CPU" in line)
    assert re.split(r"\s{2,}", cpu_row.strip())[:3] == ["CPU", "1", "2"]  # guaranteed, limit: cores
    assert "16Gi" in table

    # Options left out keep their values: ephemeral storage is not reset to 0, nor the limits.
    quota = as_json(admin.invoke("quotas", "set", "units", "units-x", "--cpu", "500m", "--json"))
    assert quota["guaranteed"] == {"gpu": 1, "cpu": 0.5, "memory": gib, "ephemeral_storage": 10 * gib}
    assert quota["limit"] == {"gpu": 1, "cpu": 2, "memory": 16 * gib, "ephemeral_storage": 10 * gib}
    # A limit equal to its guarantee follows it; one set apart stays.
    quota = as_json(admin.invoke("quotas", "set", "units", "units-x", "--gpu", "2", "--limit-cpu", "500m",
                                 "--ephemeral-storage", "20Gi", "--json"))
    assert quota["guaranteed"] == {"gpu": 2, "cpu": 0.5, "memory": gib, "ephemeral_storage": 20 * gib}
    assert quota["limit"] == {"gpu": 2, "cpu": 0.5, "memory": 16 * gib, "ephemeral_storage": 20 * gib}
    quota = as_json(admin.invoke("quotas", "set", "units", "units-x", "--limit-memory", "unbounded", "--json"))
    assert quota["limit"]["memory"] is None and quota["guaranteed"]["memory"] == gib
    quota = as_json(admin.invoke("quotas", "set", "units", "units-x", "--memory", "2Gi", "--json"))
    assert quota["limit"]["memory"] is None  # unbounded stays unbounded
    quota = as_json(admin.invoke("quotas", "set", "units", "units-x", "--hard", "--json"))
    assert quota["limit"] == quota["guaranteed"] == {"gpu": 2, "cpu": 0.5, "memory": 2 * gib,
                                                     "ephemeral_storage": 20 * gib}
    quota = as_json(admin.invoke("quotas", "set", "units", "units-x", "--unbounded", "--json"))
    assert set(quota["limit"].values()) == {None} and quota["guaranteed"]["cpu"] == 0.5
    assert "not several" in failed(admin.invoke("quotas", "set", "units", "units-x", "--unbounded", "--hard"), 2)

    # A first quota: what is not given is 0, each limit its guarantee.
    ok(admin.invoke("projects", "create", "units-new"))
    quota = as_json(admin.invoke("quotas", "set", "units-new", "units-x", "--limit-memory", "16Gi", "--json"))
    assert quota["guaranteed"] == {"gpu": 0, "cpu": 0, "memory": 0, "ephemeral_storage": 0}
    assert quota["limit"] == {"gpu": 0, "cpu": 0, "memory": 16 * gib, "ephemeral_storage": 0}

    # Errors come from the server, which parses once, in the units a person wrote.
    error = failed(admin.invoke("quotas", "set", "units", "units-x", "--limit-cpu", "100m", "--hard"), 1)
    assert "limit.cpu (100m) is below guaranteed.cpu (500m)" in error
    error = failed(admin.invoke("quotas", "set", "units", "units-x", "--cpu", "lots"), 1)
    assert "not a CPU quantity" in error and "guaranteed.cpu" in error
    error = failed(admin.invoke("quotas", "set", "units", "units-x", "--cpu", "65"), 1)
    assert "cpu: 65 cores guaranteed in all > capacity 64 cores" in error
    assert as_json(admin.invoke("quotas", "ls", "units", "--json"))[0]["guaranteed"]["cpu"] == 0.5


# --------------------------------------------------------------------------- workloads

FINE_TUNING_YAML = """\
type: Fine-Tuning          # a label; the CLI sends fine_tuning
name: from-file
project: {project}
base_model: meta-llama/Llama-3-8B
dataset: s3://data/chat
command: [python, train.py]
resources:
  cpu: 2
  memory: 1Gi
env:
  WANDB_MODE: offline
"""


def test_submit_list_get_delete(live_server: LiveServer, admin: Cli, tmp_path: Path) -> None:
    project = "wl-e2e"
    # A cluster whose agent never runs: the workloads stay Pending (admitted or not), as
    # this test of listing, filtering and deleting wants; they run elsewhere (test_agent_e2e).
    ok(admin.invoke("projects", "create", project))
    ok(admin.invoke("clusters", "create", "parked", "--kind", "kubernetes", "--cpu", "64", "--memory", "256Gi"))
    ok(admin.invoke("quotas", "set", project, "parked", "--gpu", "0", "--cpu", "16", "--memory", "64Gi"))

    spec_file = tmp_path / "ft.yaml"
    spec_file.write_text(FINE_TUNING_YAML.format(project=project))
    # The file and the options merge; options win.
    ft = as_json(admin.invoke("workloads", "submit", "-f", str(spec_file), "--name", "ft-merged", "--cpu", "500m",
                              "--set", "env.EXTRA=1", "--set", "preemptible=false", "--priority", "high", "--json"))
    assert ft["type"] == "fine_tuning" and ft["name"] == "ft-merged" and ft["project"] == project
    assert ft["cluster"] == "parked" and ft["status"] == "Pending" and ft["created_by"] == "admin@localhost"
    assert ft["resources"]["cpu"] == 0.5 and ft["resources"]["memory"] == 2**30
    # Its spec as `get --json` shows it, submitted again, asks for the same (cores in, cores
    # out): in a project of its own, so that this test's lists below are as they were.
    shown = as_json(admin.invoke("workloads", "get", str(ft["id"]), "--json"))
    assert shown["spec"]["resources"]["cpu"] == 0.5
    ok(admin.invoke("projects", "create", "wl-again"))
    ok(admin.invoke("quotas", "set", "wl-again", "parked", "--cpu", "1", "--memory", "2Gi"))
    (tmp_path / "again.json").write_text(json.dumps({**shown["spec"], "project": "wl-again"}))
    again = as_json(admin.invoke("workloads", "submit", "-f", str(tmp_path / "again.json"), "--json"))
    assert again["resources"] == ft["resources"] == {"gpu": 0, "cpu": 0.5, "memory": 2**30, "ephemeral_storage": 0}

    # From options alone, through the console script.
    dl = ok(admin.run("workloads", "submit", "--type", "Model Download", "--name", "dl-llama", "-p", project,
                      "--cpu", "1", "--memory", "512Mi", "--set", "source=meta-llama/Llama-3-8B"))
    assert "Submitted workload" in dl and "Model Download" in dl and "Pending" in dl
    ok(admin.invoke("workloads", "submit", "-t", "custom", "-n", "echo-job", "-p", project, "--command", "echo hi",
                    "--cpu", "1", "--memory", "1Gi"))
    # A JSON spec file works too.
    json_file = tmp_path / "eval.json"
    json_file.write_text(json.dumps({"type": "evaluation", "name": "eval-1", "project": project, "model": "m",
                                     "tasks": ["mmlu"], "image": "eval:1", "resources": {"cpu": 1, "memory": "1Gi"}}))
    ok(admin.invoke("workloads", "submit", "-f", str(json_file)))

    page = as_json(admin.invoke("workloads", "ls", "-p", project, "--json"))
    assert page["total"] == 4 and page["total_exact"] is True and page["page"] == 1
    assert [w["name"] for w in page["items"]] == ["eval-1", "echo-job", "dl-llama", "ft-merged"]  # newest first

    def names(*args: str) -> list[str]:
        return [w["name"] for w in as_json(admin.invoke("workloads", "ls", "-p", project, "--json", *args))["items"]]

    assert names("--type", "Fine-Tuning") == ["ft-merged"]
    assert names("--type", "model_download", "--type", "Custom") == ["echo-job", "dl-llama"]
    assert names("--name", "LLAMA") == ["dl-llama"]
    assert names("--status", "Pending", "--cluster", "parked", "--created-by", "admin@localhost",
                 "--sort", "name") == ["dl-llama", "echo-job", "eval-1", "ft-merged"]
    assert names("--status", "Running") == []
    second = as_json(admin.invoke("workloads", "ls", "-p", project, "--sort", "name", "--page-size", "3",
                                  "--page", "2", "--json"))
    assert [w["name"] for w in second["items"]] == ["ft-merged"] and second["total"] == 4

    table = ok(admin.invoke("workloads", "ls", "-p", project, "--sort", "-name"))
    for text in ("Name", "Type", "Cluster", "GPU", "CPU", "Memory", "Status", "Created by", "Created at",
                 "ft-merged", "Fine-Tuning", "Model Download", "Evaluation", "500m", "512Mi", "Pending",
                 "admin@localhost", "Showing 1 to 4 of 4"):
        assert text in table, text
    assert table.index("ft-merged") < table.index("dl-llama")
    assert "Showing 3 to 4 of 4" in ok(admin.invoke("workloads", "ls", "-p", project, "--page-size", "2",
                                                    "--page", "2"))
    assert "Showing 1 to 1 of 1" in ok(admin.invoke("workloads", "ls", "--name", "echo-job"))
    assert "No workloads match" in ok(admin.invoke("workloads", "ls", "-p", project, "--status", "Delete Failed"))

    detail = as_json(admin.invoke("workloads", "get", str(ft["id"]), "--json"))
    assert detail["type"] == "fine_tuning" and detail["type_label"] == "Fine-Tuning"
    assert detail["priority"] == "high" and detail["spec"]["env"] == {"WANDB_MODE": "offline", "EXTRA": "1"}
    assert detail["preemptible"] is False
    assert detail["spec"]["command"] == ["python", "train.py"]
    # The server's admission loop may have admitted it already; while it waits, high
    # priority puts it first in its project's queue.
    if detail["admitted_at"] is None:
        assert detail["queue_position"]["position"] == 1, detail
    else:
        assert detail["queue_position"] is None and "admitted" in detail["status_reason"], detail
    assert [c["kind"] for c in detail["components"]] == ["job"]
    assert detail["events"][0]["kind"] == "submitted"
    shown = ok(admin.invoke("workloads", "get", str(ft["id"])))
    for text in ("ft-merged", "Fine-Tuning", "Pending", "by admin@localhost", "Waited", "Components", "Events",
                 "submitted"):
        assert text in shown, text
    # Waiting (its reason and place in the queue) or already admitted by the server's loop.
    assert ("Queue position" in shown and "waiting" in shown) or "admitted to cluster parked" in shown, shown

    # Deleting asks first; "no" keeps it.
    refused = admin.invoke("workloads", "delete", str(ft["id"]), input="n\n")
    assert refused.exit_code != 0 and "Delete workload" in refused.stderr
    assert as_json(admin.invoke("workloads", "get", str(ft["id"]), "--json"))["status"] == "Pending"
    confirmed = ok(admin.invoke("workloads", "delete", str(ft["id"]), input="y\n"))
    # Never placed on a cluster, so Deleted at once.
    assert "Deleted" in confirmed
    gone = as_json(admin.invoke("workloads", "delete", str(page["items"][0]["id"]), "--yes", "--json"))
    assert gone["status"] == "Deleted" and gone["delete_requested_at"] is not None
    assert "already Deleted" in failed(admin.invoke("workloads", "delete", str(ft["id"]), "--yes"), 1)

    assert sorted(names()) == ["dl-llama", "echo-job"]  # Deleted is hidden by default
    assert sorted(names("--status", "Deleted")) == ["eval-1", "ft-merged"]

    stats = as_json(admin.invoke("workloads", "stats", "-p", project, "--json"))
    assert stats["total"] == 4 and stats["by_status"]["Deleted"] == 2 and stats["by_status"]["Pending"] == 2
    assert stats["by_type"]["fine_tuning"] == 1 and stats["by_type"]["model_download"] == 1
    stats_table = ok(admin.invoke("workloads", "stats", "-p", project))
    assert "Deleted" in stats_table and "Model Download" in stats_table


def test_bad_submissions_show_the_api_error(live_server: LiveServer, admin: Cli, tmp_path: Path) -> None:
    project = "bad-e2e"
    new_project(admin, project, "--limit-gpu", "0", "--limit-cpu", "unbounded", "--limit-memory", "unbounded")

    # Through the console script: red message on stderr, nothing on stdout, exit 1.
    result = admin.run("workloads", "submit", "-t", "fine-tuning", "-n", "no-data", "-p", project,
                       "--set", "base_model=m", "--command", "train")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("Error: dataset: Field required")

    over = failed(admin.invoke("workloads", "submit", "-t", "custom", "-n", "big", "-p", project, "--gpu", "3",
                               "--command", "x"), 1)
    assert "exceeds the quota limit" in over and "(field: resources)" in over

    assert "project 'nope' not found" in failed(admin.invoke("workloads", "submit", "-t", "custom", "-n", "x",
                                                             "-p", "nope", "--command", "x"), 1)
    assert "give an image or a command" in failed(admin.invoke("workloads", "submit", "-t", "training", "-n", "t",
                                                                "-p", project, "--set", "dataset=d"), 1)
    assert "unknown workload type 'batch'" in failed(admin.invoke("workloads", "submit", "-t", "batch", "-n", "x",
                                                                  "-p", project), 2)
    assert "--type" in failed(admin.invoke("workloads", "submit", "-n", "x", "-p", project), 2)
    assert "key=value" in failed(admin.invoke("workloads", "submit", "-t", "custom", "--set", "oops"), 2)
    assert "cannot read" in failed(admin.invoke("workloads", "submit", "-f", str(tmp_path / "missing.yaml")), 2)
    bad_yaml = tmp_path / "list.yaml"
    bad_yaml.write_text("- a\n- b\n")
    assert "mapping" in failed(admin.invoke("workloads", "submit", "-f", str(bad_yaml)), 2)

    assert "unknown status 'sleeping'" in failed(admin.invoke("workloads", "ls", "--status", "sleeping"), 1)
    assert "cannot sort by 'size'" in failed(admin.invoke("workloads", "ls", "--sort", "size"), 1)
    assert "workload 999999 not found" in failed(admin.invoke("workloads", "get", "999999"), 1)
    assert as_json(admin.invoke("workloads", "ls", "-p", project, "--json"))["total"] == 0


def test_a_name_outside_the_rule_shows_the_api_message(live_server: LiveServer, admin: Cli) -> None:
    """The CLI checks nothing itself: the server's rule, in the server's words."""
    project = "names-e2e"
    new_project(admin, project)
    for name in ("Hello World!", "a/b"):
        result = admin.run("workloads", "submit", "-t", "custom", "-n", name, "-p", project, "--command", "true")
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.startswith(f"Error: name: must be {WORKLOAD_NAME_RULE}"), result.stderr
    created = as_json(admin.invoke("workloads", "submit", "-t", "custom", "-n", "hello-world.v2_1", "-p", project,
                                   "--command", "true", "--json"))
    assert created["name"] == "hello-world.v2_1"


def test_member_of_another_project_gets_not_found(live_server: LiveServer, admin: Cli, tmp_path: Path) -> None:
    new_project(admin, "alpha")
    new_project(admin, "beta")
    ok(admin.invoke("users", "create", "mia@example.com"))
    token = as_json(admin.invoke("tokens", "create", "mia@example.com", "--json"))["token"]
    ok(admin.invoke("projects", "add-member", "alpha", "mia@example.com"))
    mia = live_server.cli(tmp_path / "mia.json", token=token)

    beta_job = as_json(admin.invoke("workloads", "submit", "-t", "custom", "-n", "beta-job", "-p", "beta",
                                    "--command", "x", "--cpu", "1", "--memory", "1Gi", "--json"))
    alpha_job = as_json(mia.invoke("workloads", "submit", "-t", "custom", "-n", "alpha-job", "-p", "alpha",
                                   "--command", "x", "--cpu", "1", "--memory", "1Gi", "--json"))
    assert alpha_job["created_by"] == "mia@example.com"

    assert [p["name"] for p in as_json(mia.invoke("projects", "ls", "--json"))] == ["alpha"]
    assert [w["name"] for w in as_json(mia.invoke("workloads", "ls", "--json"))["items"]] == ["alpha-job"]
    assert [c["name"] for c in as_json(mia.invoke("clusters", "ls", "--json"))] == ["local"]

    # Another project's things are not found (not forbidden): their existence stays hidden.
    assert f"workload {beta_job['id']} not found" in failed(mia.invoke("workloads", "get", str(beta_job["id"])), 1)
    assert "not found" in failed(mia.invoke("workloads", "delete", str(beta_job["id"]), "--yes"), 1)
    assert "project 'beta' not found" in failed(mia.invoke("workloads", "ls", "-p", "beta"), 1)
    assert "project 'beta' not found" in failed(mia.invoke("projects", "get", "beta"), 1)
    assert "project 'beta' not found" in failed(mia.invoke("workloads", "stats", "-p", "beta"), 1)
    assert "project 'beta' not found" in failed(mia.invoke("workloads", "submit", "-t", "custom", "-n", "x",
                                                           "-p", "beta", "--command", "x"), 1)
    # Their own project is readable, but only admins change it.
    assert "alpha" in ok(mia.invoke("projects", "get", "alpha"))
    assert "administrators" in failed(mia.invoke("quotas", "set", "alpha", "local", "--gpu", "0", "--cpu", "99",
                                                 "--memory", "1Ti"), 1)
    assert "administrators" in failed(mia.invoke("projects", "create", "gamma"), 1)

    ok(admin.invoke("projects", "remove-member", "alpha", "mia@example.com"))
    assert "not found" in failed(mia.invoke("workloads", "get", str(alpha_job["id"])), 1)
    assert as_json(mia.invoke("workloads", "ls", "--json"))["items"] == []


# --------------------------------------------------------------------------- the client

def test_client_against_the_live_server(live_server: LiveServer) -> None:
    with CorralClient(live_server.url, live_server.admin_token) as client:
        assert live_server.admin_token not in repr(client)
        assert client.health()["status"] == "ok"
        me = client.me()
        assert isinstance(me, User) and me.email == "admin@localhost" and me.is_admin

        local = client.get_cluster("local")
        assert isinstance(local, Cluster) and local.status == "healthy"
        assert all(isinstance(c, Cluster) for c in client.list_clusters())
        created_cluster = client.create_cluster("slurm-a", "slurm", capacity={"gpu": 2, "cpu": "16", "memory": "64Gi"})
        assert isinstance(created_cluster, ClusterCreated) and created_cluster.status == "verifying"
        assert created_cluster.agent_token.startswith("crla_")
        assert created_cluster.agent_token not in repr(created_cluster)

        project = client.create_project("client-e2e", description="from the client")
        assert isinstance(project, Project) and client.get_project("client-e2e") == project
        assert "client-e2e" in [p.name for p in client.list_projects()]
        # Bootstrap guarantees the whole built-in cluster to `default`: others borrow.
        nothing = {"gpu": 0, "cpu": 0, "memory": 0}
        quota = client.set_quota("client-e2e", "local", nothing, "unbounded")
        assert isinstance(quota, Quota) and set(quota.limit.values()) == {None}
        quota = client.set_quota("client-e2e", "local", nothing, {"cpu": "12", "memory": None})
        assert quota.limit == {"gpu": 0, "cpu": 12, "memory": None, "ephemeral_storage": 0}
        # The units of the CLI: cores (2, "2"), "500m", bytes or "16Gi".
        quota = client.set_quota("client-e2e", "local", nothing, {"cpu": "500m", "memory": "16Gi"})
        assert quota.limit == {"gpu": 0, "cpu": 0.5, "memory": 16 * 2**30, "ephemeral_storage": 0}
        quota = client.set_quota("client-e2e", "local", nothing, {"cpu": 2, "memory": 16 * 2**30,
                                                                  "ephemeral_storage": "500M"})
        assert quota.limit == {"gpu": 0, "cpu": 2, "memory": 16 * 2**30, "ephemeral_storage": 500 * 10**6}
        with pytest.raises(CorralAPIError) as too_much:
            client.set_quota("client-e2e", "local", {"gpu": 0, "cpu": 100_000, "memory": 0})
        assert too_much.value.status_code == 422 and "capacity" in too_much.value.message
        assert [q.cluster for q in client.list_quotas("client-e2e")] == ["local"]
        # What the client reads, it can write back unchanged (cores in and out).
        read = client.get_quota("client-e2e", "local")
        assert client.set_quota("client-e2e", "local", read.guaranteed, read.limit).limit == read.limit
        assert client.get_cluster("slurm-a").status == "verifying"

        user = client.create_user("zoe@example.com", display_name="Zoe")
        assert isinstance(user, User) and user.role == "member" and not user.is_admin
        assert "zoe@example.com" in [u.email for u in client.list_users()]
        membership = client.add_member("client-e2e", "zoe@example.com")
        assert (membership.project, membership.email) == ("client-e2e", "zoe@example.com")
        members = client.list_members("client-e2e")
        assert all(isinstance(m, Member) for m in members) and [m.email for m in members] == ["zoe@example.com"]
        client.remove_member("client-e2e", "zoe@example.com")
        assert client.list_members("client-e2e") == []

        new_token = client.create_token("scripts", expires_in_days=1)
        assert isinstance(new_token, TokenCreated) and new_token.token.startswith("crl_")
        assert new_token.token not in repr(new_token) and new_token.expires_at is not None
        assert new_token.id in [t.id for t in client.list_tokens()]
        with CorralClient(live_server.url, new_token.token) as scripted:
            assert scripted.me().email == "admin@localhost"
            assert client.revoke_token(new_token.id).revoked is True
            with pytest.raises(CorralAPIError) as unauthenticated:
                scripted.me()
        assert unauthenticated.value.status_code == 401 and unauthenticated.value.code == "unauthenticated"

        # On slurm-a, whose agent never runs, with room for one at a time: the rest wait.
        client.set_quota("client-e2e", "slurm-a", {"gpu": 0, "cpu": 1, "memory": "8Gi"})
        submitted = [client.submit_workload({"type": "Fine-Tuning", "name": f"ft-{i}", "project": "client-e2e",
                                             "cluster": "slurm-a", "base_model": "m", "dataset": "d",
                                             "command": "train", "resources": {"cpu": 1, "memory": "1Gi"}})
                     for i in range(5)]
        assert all(isinstance(w, WorkloadCreated) for w in submitted)
        assert submitted[0].type == "fine_tuning" and submitted[0].type_label == "Fine-Tuning"
        page = client.list_workloads(project="client-e2e", page_size=2, types=["Fine-Tuning"], statuses=["pending"])
        assert isinstance(page, WorkloadPage) and page.total == 5 and page.total_exact
        assert all(isinstance(w, Workload) for w in page.items) and (page.first_index, page.last_index) == (1, 2)
        assert [w.name for w in page.items] == ["ft-4", "ft-3"]
        every = list(client.iter_workloads(project="client-e2e", page_size=2, sort="name"))
        assert [w.name for w in every] == [f"ft-{i}" for i in range(5)]
        assert len(list(client.iter_workloads(project="client-e2e", page_size=2, limit=3))) == 3

        deadline = time.monotonic() + 15
        while client.get_workload(submitted[0].id).admitted_at is None and time.monotonic() < deadline:
            time.sleep(0.05)
        detail = client.get_workload(submitted[1].id)
        assert isinstance(detail, WorkloadDetail) and detail.status_label == "Pending"
        assert detail.queue_position is not None and (detail.queue_position.position, detail.queue_position.of) == (
            1, 4), detail.queue_position
        assert all(isinstance(c, Component) for c in detail.components) and detail.events[0].kind == "submitted"
        deleted = client.delete_workload(submitted[1].id)
        assert deleted.status == "Deleted" and deleted.status_label == "Deleted"
        stats = client.workload_stats("client-e2e")
        assert isinstance(stats, WorkloadStats) and stats.total == 5
        assert stats.by_status["Deleted"] == 1 and stats.by_type["fine_tuning"] == 5

        with pytest.raises(CorralAPIError) as missing:
            client.get_workload(987654)
        assert (missing.value.status_code, missing.value.code, missing.value.message) == (
            404, "not_found", "workload 987654 not found")
        with pytest.raises(CorralAPIError) as invalid:
            client.submit_workload({"type": "fine_tuning", "name": "x", "project": "client-e2e", "base_model": "m",
                                    "command": "train"})
        assert (invalid.value.status_code, invalid.value.code, invalid.value.field) == (422, "invalid", "dataset")
        with pytest.raises(CorralAPIError) as duplicate:
            client.create_project("client-e2e")
        assert (duplicate.value.status_code, duplicate.value.code, duplicate.value.field) == (
            409, "already_exists", "name")

    with pytest.raises(CorralConnectionError):
        CorralClient(f"http://127.0.0.1:{free_port()}", "crl_x", timeout=2).me()


def test_json_output_is_the_only_stdout(live_server: LiveServer, admin: Cli) -> None:
    """Scripts pipe --json into other tools: nothing else may reach stdout."""
    for args in (("projects", "ls"), ("clusters", "ls"), ("quotas", "ls", "default"), ("workloads", "ls"),
                 ("workloads", "stats", "-p", "default"), ("whoami",), ("users", "list")):
        json.loads(ok(admin.invoke(*args, "--json")))


def test_help_lists_the_commands() -> None:
    result = Cli().invoke("--help")
    for command in ("serve", "login", "logout", "db", "users", "tokens", "projects", "clusters", "quotas",
                    "workloads"):
        assert command in ok(result)
    assert ok(Cli().invoke("--version")).startswith("corral ")


def test_footer_of_the_workloads_table() -> None:
    from datetime import UTC, datetime

    from corral.cli.workloads import _footer

    row = {"id": 1, "name": "n", "type": "custom", "project": "p", "cluster": "c", "resources": {}, "status": "Running",
           "created_by": "a@b", "created_at": datetime.now(UTC)}

    def footer(page: int, size: int, items: int, total: int, exact: bool = True) -> str:
        return _footer(WorkloadPage(items=[row] * items, page=page, page_size=size, total=total, total_exact=exact))

    assert footer(1, 20, 20, 135) == "Showing 1 to 20 of 135 (next: --page 2)"
    assert footer(7, 20, 15, 135) == "Showing 121 to 135 of 135"
    assert footer(2, 50, 50, 10_000, exact=False) == "Showing 51 to 100 of at least 10000 (next: --page 3)"
    assert footer(1, 20, 0, 0) == "No workloads match."
    assert footer(9, 20, 0, 135) == "No workloads on page 9 (total 135)."
