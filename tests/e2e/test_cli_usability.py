"""What a new user of the CLI trips on (issue 14): tables in an 80-column terminal, help
that names types as people do, `quotas ls -p`, `clusters delete`, each cluster's health
where a cluster is chosen, and a start message whose commands run as printed.

The commands run as the installed console script in a subprocess (as a user runs them),
against `corral serve` on SQLite: none of this depends on the database.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from corral.cli.main import app
from tests.e2e.conftest import CORRAL_BIN, Cli, LiveServer, failed, make_database, ok, start_server, stop_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("cli-usability")
    with ExitStack() as cleanup:
        # A PATH without the virtual environment: the start message must still be runnable.
        live = start_server(make_database("sqlite", root / "data", cleanup), root / "server.log",
                            env_extra={"PATH": "/usr/bin:/bin"})
        yield live
        stop_server(live)


@pytest.fixture(scope="module")
def admin(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return server.cli(tmp_path_factory.mktemp("cli-config") / "config.json", token=server.admin_token)


def lines(text: str) -> list[str]:
    return text.rstrip("\n").splitlines()


# --------------------------------------------------------------------------- tables

LONG_NAMES = ("llama-3-70b-instruct-fine-tuning-on-the-support-tickets-of-2026",
              "evaluation-of-the-quantised-mixtral-8x22b-against-the-holdout-set")


@pytest.fixture(scope="module")
def waiting_workloads(admin: Cli) -> list[int]:
    """Two workloads with long names, queued on a cluster that was never heard from (long reasons)."""
    ok(admin.run("clusters", "create", "gpu-far-away", "--kind", "slurm", "--gpu", "8", "--cpu", "64",
                 "--memory", "512Gi"))
    ok(admin.run("quotas", "set", "default", "gpu-far-away", "--gpu", "4", "--cpu", "32", "--memory", "256Gi"))
    ids = []
    for name in LONG_NAMES:
        created = json.loads(ok(admin.run("workloads", "submit", "--type", "custom", "--name", name, "-p", "default",
                                          "-c", "gpu-far-away", "--command", "sleep 1", "--cpu", "1",
                                          "--memory", "1Gi", "--json")))
        ids.append(created["id"])
    return ids


def test_the_workloads_table_fits_80_columns(admin: Cli, waiting_workloads: list[int]) -> None:
    narrow = ok(admin.with_env(COLUMNS="80").run("workloads", "ls"))
    assert all(len(line) <= 80 for line in lines(narrow)), narrow
    header = lines(narrow)[0].split()
    # What matters most stays: which workload, its status and why it waits.
    for column in ("ID", "Name", "Status", "Why"):
        assert column in header, narrow
    # One line per workload, each beginning with its whole id; the long names end in "…".
    rows = [line for line in lines(narrow) if line.strip().split(" ")[0].isdigit()]
    assert sorted(int(r.split()[0]) for r in rows) == sorted(waiting_workloads), narrow
    assert all("…" in row for row in rows) and "Pending" in narrow
    # What did not fit is named, not silently cut.
    assert "left out at 80 columns: " in narrow and "Created at" in narrow

    wide = ok(admin.with_env(COLUMNS="250").run("workloads", "ls"))
    assert "left out" not in wide
    # Into a pipe with no COLUMNS (a script, `| grep`): not cut to 80 columns either.
    piped = ok(admin.with_env(COLUMNS="").run("workloads", "ls"))
    assert "left out" not in piped and all(name in piped for name in LONG_NAMES), piped
    assert all(name in wide for name in LONG_NAMES)
    for column in ("Type", "Project", "Cluster", "GPU", "CPU", "Memory", "Created by", "Created at"):
        assert column in lines(wide)[0]


@pytest.mark.parametrize("args", [("clusters", "ls"), ("quotas", "ls", "default"), ("projects", "ls"),
                                  ("workloads", "stats", "-p", "default"), ("users", "list")])
def test_every_table_fits_80_columns(admin: Cli, waiting_workloads: list[int], args: tuple[str, ...]) -> None:
    out = ok(admin.with_env(COLUMNS="80").run(*args))
    assert out.strip() and all(len(line) <= 80 for line in lines(out)), out


def test_details_fit_80_columns(admin: Cli, waiting_workloads: list[int]) -> None:
    out = ok(admin.with_env(COLUMNS="80").run("workloads", "get", str(waiting_workloads[0])))
    assert all(len(line) <= 80 for line in lines(out)), out
    assert "Events" in out and "submitted" in out


# --------------------------------------------------------------------------- help

def _all_commands() -> list[tuple[str, ...]]:
    group = typer.main.get_command(app)
    found: list[tuple[str, ...]] = []
    for name in group.commands:  # type: ignore[attr-defined]
        command = group.load(name)  # type: ignore[attr-defined]
        found.append((name,))
        if hasattr(command, "list_commands"):
            found += [(name, sub) for sub in command.list_commands(None)]
    return found


@pytest.mark.parametrize("path", _all_commands(), ids=" ".join)
def test_help_names_types_as_people_do(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    for python_name in ("<str>", "<int", "<bool>", "<float", "list[", "<Path>", "<path>", "<datetime>", "NoneType"):
        assert python_name not in result.output, result.output
    assert all(len(line) <= 80 for line in lines(result.output)), result.output


def test_help_shows_what_to_type() -> None:
    def helped(*args: str) -> str:
        result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "80"})
        assert result.exit_code == 0, result.output
        return result.output

    assert "Usage: corral quotas set [OPTIONS] PROJECT CLUSTER" in helped("quotas", "set")
    ls = helped("workloads", "ls")
    assert "--project TEXT" in ls and "--page INTEGER" in ls and "--json  " in ls
    assert "--token-file PATH" in helped("agent")


# --------------------------------------------------------------------------- quotas ls -p

def test_quotas_ls_takes_the_project_as_argument_or_with_p(admin: Cli) -> None:
    positional = json.loads(ok(admin.run("quotas", "ls", "default", "--json")))
    assert positional and {q["project"] for q in positional} == {"default"}
    assert json.loads(ok(admin.run("quotas", "ls", "-p", "default", "--json"))) == positional
    assert json.loads(ok(admin.run("quotas", "ls", "--project", "default", "--json"))) == positional
    assert "give the project" in failed(admin.run("quotas", "ls"), 2)
    assert "two projects given" in failed(admin.run("quotas", "ls", "default", "-p", "other"), 2)
    assert "not found" in failed(admin.run("quotas", "ls", "-p", "no-such-project"), 1)


# --------------------------------------------------------------------------- clusters delete

def test_clusters_delete(admin: Cli, waiting_workloads: list[int]) -> None:
    ok(admin.run("clusters", "create", "spare", "--kind", "slurm", "--gpu", "2"))
    ok(admin.run("quotas", "set", "default", "spare", "--gpu", "1"))

    # Asked first; no means nothing happens.
    assert "Aborted" in failed(admin.run("clusters", "delete", "spare", input="n\n"), 1)
    assert "spare" in [c["name"] for c in json.loads(ok(admin.run("clusters", "ls", "--json")))]

    assert "Removed cluster spare." in ok(admin.run("clusters", "delete", "spare", input="y\n"))
    assert "spare" not in [c["name"] for c in json.loads(ok(admin.run("clusters", "ls", "--json")))]
    assert "spare" not in [q["cluster"] for q in json.loads(ok(admin.run("quotas", "ls", "default", "--json")))]

    # A cluster that still has workloads stays, and the error says why.
    assert "still has workloads" in failed(admin.run("clusters", "delete", "gpu-far-away", "--yes"), 1)
    assert "not found" in failed(admin.run("clusters", "delete", "spare", "--yes"), 1)
    assert json.loads(ok(admin.run("clusters", "delete", "--yes", "--json", *_new_cluster(admin, "spare2")))) == {
        "cluster": "spare2", "deleted": True}


def _new_cluster(admin: Cli, name: str) -> tuple[str]:
    ok(admin.run("clusters", "create", name, "--kind", "slurm"))
    return (name,)


def test_deleting_a_cluster_needs_an_admin(server: LiveServer, admin: Cli, tmp_path: Path) -> None:
    ok(admin.run("users", "create", "member@example.com"))
    token = ok(admin.run("tokens", "create", "member@example.com")).strip()
    member = server.cli(tmp_path / "member.json", token=token)
    failed(member.run("clusters", "delete", "gpu-far-away", "--yes"), 1)
    assert "gpu-far-away" in [c["name"] for c in json.loads(ok(admin.run("clusters", "ls", "--json")))]


# --------------------------------------------------------------------------- cluster health

def test_clusters_show_their_health(admin: Cli, waiting_workloads: list[int]) -> None:
    out = ok(admin.with_env(COLUMNS="80").run("clusters", "ls"))
    row = {line.split()[0]: line for line in lines(out)[2:] if line.strip()}
    assert "healthy" in row["local"] and "never heard from" in row["gpu-far-away"]
    assert "wait until its agent reports" in out

    details = ok(admin.run("clusters", "get", "gpu-far-away"))
    assert "never heard from" in details and "corral agent" in details
    assert "never heard from" not in ok(admin.run("clusters", "get", "local"))


def test_submitting_to_a_cluster_never_heard_from_says_so(admin: Cli, waiting_workloads: list[int]) -> None:
    result = admin.run("workloads", "submit", "--type", "custom", "--name", "lonely", "-p", "default",
                       "-c", "gpu-far-away", "--command", "true", "--cpu", "1", "--memory", "1Gi")
    assert "Submitted workload" in ok(result)
    assert "gpu-far-away has never been heard from" in result.stderr
    # On a healthy cluster, no such note; and --json prints nothing but JSON.
    healthy = admin.run("workloads", "submit", "--type", "custom", "--name", "fine", "-p", "default",
                        "-c", "local", "--command", "true", "--cpu", "100m", "--memory", "64Mi")
    assert "Submitted workload" in ok(healthy) and "heard" not in healthy.stderr
    scripted = admin.run("workloads", "submit", "--type", "custom", "--name", "lonely-json", "-p", "default",
                         "-c", "gpu-far-away", "--command", "true", "--cpu", "1", "--memory", "1Gi", "--json")
    assert json.loads(ok(scripted))["cluster"] == "gpu-far-away"


# --------------------------------------------------------------------------- corral serve

def test_the_start_message_names_a_command_that_runs(server: LiveServer, tmp_path: Path) -> None:
    """The server ran with a PATH that does not find `corral`: the message gives its path,
    and the login line it prints works when pasted into a shell with that PATH."""
    login = next(line.strip() for line in lines(server.log()) if " login --server " in line)
    assert login.startswith(f"{CORRAL_BIN} login --server {server.url} --token-file ")
    shell = subprocess.run(["/bin/sh", "-c", login], capture_output=True, text=True, timeout=60,
                           env={"PATH": "/usr/bin:/bin", "CORRAL_CONFIG": str(tmp_path / "config.json"),
                                "HOME": str(tmp_path)})
    assert shell.returncode == 0 and "Logged in to" in shell.stdout, shell.stderr

    # Where PATH finds this corral, the message says plain `corral`.
    probe = "from corral.cli.server import corral_command; print(corral_command())"
    for path, expected in ((f"{CORRAL_BIN.parent}:/usr/bin:/bin", "corral"),
                           ("/usr/bin:/bin", shlex.quote(str(CORRAL_BIN)))):
        said = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                              env={"PATH": path}).stdout.strip()
        assert said == expected, (path, said)
