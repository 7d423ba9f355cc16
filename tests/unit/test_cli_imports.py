"""The CLI's import boundary: a call imports what its command needs, never the server.

Each case runs `corral ...` in a fresh interpreter (the import state of this test process
says nothing) and reports which modules were loaded when the command finished. This is a
behaviour test; the time it saves is measured by bench/cli_startup.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from corral.cli.main import COMMANDS, app

# What only the server, the scheduler, the database commands or model downloads need.
SERVER_SIDE = ("sqlalchemy", "alembic", "fastapi", "starlette", "uvicorn", "huggingface_hub", "psycopg", "jinja2",
               "argon2", "corral.api", "corral.services", "corral.db", "corral.scheduler", "corral.web",
               "corral.agent", "corral.backends")

RUN = """
import json, sys
from corral.cli.main import app
try:
    app(sys.argv[1:], prog_name="corral")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str, server: str | None = None, token: str = "crl_test") -> tuple[int | None, set[str], str]:
    """Run `corral args` in a fresh interpreter: (exit code, modules loaded, stderr).
    Without ``server``, the one it is pointed at does not listen: the command gets as far
    as its request."""
    env = {"CORRAL_SERVER": server or f"http://127.0.0.1:{closed_port()}", "CORRAL_TOKEN": token, "COLUMNS": "80",
           "NO_COLOR": "1", "PATH": "/usr/bin:/bin", "CORRAL_CONFIG": "/nonexistent/corral.json",
           **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}
    result = subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True, env=env, timeout=60)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report["code"], set(report["modules"]), result.stderr


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_help_imports_no_command_and_no_client() -> None:
    code, modules, _ = run_cli("--help")
    assert code == 0
    assert loaded(modules, SERVER_SIDE) == []
    # Not even the client commands: the root help comes from the names in corral.cli.main.
    assert loaded(modules, ("corral.cli.workloads", "corral.cli.remote", "corral.cli.clusters", "corral.cli.admin",
                            "corral.cli.server", "corral.cli.agent", "corral.cli.secrets", "corral.client", "httpx",
                            "rich", "pydantic", "yaml")) == []


@pytest.mark.parametrize("args", [
    ("workloads", "ls"),
    ("workloads", "submit", "--type", "custom", "--name", "x", "--command", "true", "-p", "default"),
    ("projects", "ls"),
    ("clusters", "ls"),
    ("quotas", "ls", "default"),
    ("whoami",),
])
def test_a_client_command_never_imports_the_server(args: tuple[str, ...]) -> None:
    code, modules, stderr = run_cli(*args)
    # It really ran: it built its request and found the (closed) server unreachable.
    assert code == 1 and "127.0.0.1" in stderr, stderr
    assert "corral.client" in modules
    assert loaded(modules, SERVER_SIDE) == []
    # Nor the other commands' modules.
    assert loaded(modules, ("corral.cli.admin", "corral.cli.server", "corral.cli.agent")) == []


# What a plain request does not need: httpx and what its import brings (its own command
# line loads click and pygments); the CLI's requests go through the standard library
# (CorralClient(light=True)). Streaming logs still uses httpx.
HTTP_LIBRARIES = ("httpx", "httpcore", "h11", "anyio", "certifi", "pygments", "click", "idna", "sniffio")


@pytest.mark.parametrize("args", [
    ("workloads", "ls"),
    ("workloads", "submit", "--type", "custom", "--name", "x", "--command", "true", "-p", "default"),
    ("workloads", "get", "1"),
    ("whoami",),
    ("login", "--server", "127.0.0.1:9", "--token", "crl_x"),
])
def test_a_client_command_loads_no_http_library(args: tuple[str, ...]) -> None:
    code, modules, stderr = run_cli(*args)
    assert code == 1 and "127.0.0.1" in stderr, stderr
    assert loaded(modules, HTTP_LIBRARIES) == []


def test_listing_workloads_does_not_load_yaml_or_the_specs() -> None:
    _, modules, _ = run_cli("workloads", "ls")
    assert loaded(modules, ("yaml", "corral.domain.workloads")) == []


def test_the_root_help_lines_are_the_commands_own() -> None:
    """`corral --help` shows each command's line from corral.cli.main.COMMANDS without
    loading it; each must say what the command's own help says."""
    import typer.main

    group = typer.main.get_command(app)
    for name, lazy in COMMANDS.items():
        assert group.load(name).help.splitlines()[0] == lazy.help, name  # type: ignore[attr-defined]


def test_server_side_commands_still_load() -> None:
    """`corral serve`, `corral agent` and the database commands are there, with their options."""
    for args, option in ((("serve", "--help"), "--port"), (("agent", "--help"), "--server"),
                         (("db", "upgrade", "--help"), "--json"), (("users", "create", "--help"), "--admin")):
        result = subprocess.run([sys.executable, "-m", "corral.cli.main", *args], capture_output=True, text=True,
                                timeout=60, env={"COLUMNS": "80", "PATH": "/usr/bin:/bin",
                                                 **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}})
        assert result.returncode == 0 and option in result.stdout, (args, result.stdout, result.stderr)
