"""End-to-end fixtures: the real server (`corral serve`) in a subprocess, and the CLI.

The server runs on SQLite and, when CORRAL_TEST_POSTGRES_URL is set, also on a fresh
PostgreSQL database. The CLI runs either as the installed console script (a
subprocess, exactly as a user runs it) or in-process through Typer's CliRunner, which
is much faster and still talks to the live server over HTTP.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from corral.cli.main import app
from tests.conftest import fresh_postgres_database, work_root_for

CORRAL_BIN = Path(sys.executable).parent / "corral"
# Every CORRAL_* variable the CLI or the server reads; each test sets the ones it needs.
_CORRAL_VARS = ("CORRAL_DATA_DIR", "CORRAL_DATABASE_URL", "CORRAL_SERVER", "CORRAL_TOKEN", "CORRAL_CONFIG",
                "CORRAL_HOST", "CORRAL_PORT", "CORRAL_BOOTSTRAP", "CORRAL_LOG_LEVEL", "CORRAL_LOCAL_CLUSTER_NAME",
                "CORRAL_DEFAULT_PROJECT_NAME", "CORRAL_CLUSTER_UNHEALTHY_AFTER_S", "CORRAL_WORKLOAD_ROOT")


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "postgres" in (params.get("live_server"), params.get("database_kind")):
            item.add_marker(pytest.mark.postgres)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- databases

@dataclass
class Database:
    kind: str  # sqlite | postgres
    data_dir: Path
    url: str | None  # None: the SQLite file in data_dir

    @property
    def env(self) -> dict[str, str | None]:
        """What the server and the direct-database commands need (None unsets)."""
        return {"CORRAL_DATA_DIR": str(self.data_dir), "CORRAL_DATABASE_URL": self.url,
                "CORRAL_WORKLOAD_ROOT": str(work_root_for(self.data_dir / "local-cluster"))}


@pytest.fixture(scope="module")
def _postgres_databases() -> Iterator[ExitStack]:
    """PostgreSQL databases made during the module are dropped at its end."""
    with ExitStack() as stack:
        yield stack


def make_database(kind: str, data_dir: Path, cleanup: ExitStack) -> Database:
    """A new, empty database (no schema): SQLite in data_dir, or a fresh PostgreSQL one."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if kind == "sqlite":
        return Database("sqlite", data_dir, None)
    return Database("postgres", data_dir, cleanup.enter_context(fresh_postgres_database("corral_e2e")))


# --------------------------------------------------------------------------- the CLI

def clean_env(extra: dict[str, str | None]) -> dict[str, str]:
    """This process's environment without any CORRAL_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_") or k == "CORRAL_TEST_POSTGRES_URL"}
    env.update({"COLUMNS": "200", "NO_COLOR": "1"})
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


@dataclass
class Cli:
    """The `corral` command with a given environment (config file, server, token, database)."""

    env: dict[str, str | None] = field(default_factory=dict)

    def with_env(self, **overrides: str | None) -> Cli:
        return Cli({**self.env, **overrides})

    def run(self, *args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The installed console script, in a subprocess."""
        return subprocess.run([str(CORRAL_BIN), *args], input=input, capture_output=True, text=True,
                              env=clean_env(self.env), timeout=timeout)

    def invoke(self, *args: str, input: str | None = None) -> Result:
        """The same command in-process (Typer's CliRunner); it still talks HTTP to the server."""
        env: dict[str, str | None] = {k: None for k in _CORRAL_VARS}
        env.update({"COLUMNS": "200", "NO_COLOR": "1"})
        env.update(self.env)
        return CliRunner().invoke(app, list(args), input=input, env=env, catch_exceptions=False)


def ok(result: Result | subprocess.CompletedProcess[str]) -> str:
    """Assert a command succeeded; its stdout."""
    code = result.exit_code if isinstance(result, Result) else result.returncode
    assert code == 0, f"exit {code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def failed(result: Result | subprocess.CompletedProcess[str], code: int | None = None) -> str:
    """Assert a command failed (with that exit code if given); its stderr."""
    actual = result.exit_code if isinstance(result, Result) else result.returncode
    assert actual != 0, f"unexpectedly succeeded\nstdout:\n{result.stdout}"
    if code is not None:
        assert actual == code, f"exit {actual}, expected {code}\nstderr:\n{result.stderr}"
    return result.stderr


# --------------------------------------------------------------------------- the server

@dataclass
class LiveServer:
    url: str
    database: Database
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def token_file(self) -> Path:
        return self.database.data_dir / "admin-token"

    @property
    def admin_token(self) -> str:
        return self.token_file.read_text().strip()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cli(self, config: Path, token: str | None = None) -> Cli:
        """A CLI for this server: its own config file, the database for direct commands,
        and, given a token, CORRAL_SERVER/CORRAL_TOKEN."""
        env: dict[str, str | None] = {"CORRAL_CONFIG": str(config), **self.database.env}
        if token is not None:
            env.update(CORRAL_SERVER=self.url, CORRAL_TOKEN=token)
        return Cli(env)


def start_server(database: Database, log_path: Path, timeout: float = 60,
                 env_extra: dict[str, str] | None = None) -> LiveServer:
    port = free_port()
    env = clean_env({**database.env, "CORRAL_LOG_LEVEL": "warning", **(env_extra or {})})
    log = log_path.open("ab")
    process = subprocess.Popen([str(CORRAL_BIN), "serve", "--port", str(port)], env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    server = LiveServer(f"http://127.0.0.1:{port}", database, process, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"`corral serve` exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop_server(server)
    pytest.fail(f"`corral serve` did not answer /healthz within {timeout}s:\n{server.log()}")


def stop_server(server: LiveServer, *, remove_workloads: bool = True) -> None:
    """Stop the server; then (by default) what its built-in cluster still runs, since
    components outlive the control plane on purpose."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGINT)
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=5)
    if remove_workloads:
        remove_local_components(server.database.data_dir / "local-cluster")


def remove_local_components(state_dir: Path, timeout: float = 20) -> None:
    from corral.backends.local import LocalBackend

    if not state_dir.exists():
        return
    backend = LocalBackend(state_dir, work_root=work_root_for(state_dir))
    try:
        live = {o.component_id for o in backend.all_observations() if o.status.value not in ("Deleted",)}
        for cid in live:
            backend.stop(cid, grace_s=0.5)
        deadline = time.monotonic() + timeout
        while live and time.monotonic() < deadline:
            live -= {o.component_id for o in backend.observe() if o.status.value == "Deleted"}
            time.sleep(0.05)
    finally:
        backend.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def live_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                _postgres_databases: ExitStack) -> Iterator[LiveServer]:
    """`corral serve` on a fresh database, shared by the tests of a module."""
    root = tmp_path_factory.mktemp(f"server-{request.param}")
    database = make_database(request.param, root / "data", _postgres_databases)
    server = start_server(database, root / "server.log")
    yield server
    stop_server(server)
    assert server.process.returncode is not None
