"""`corral secrets` and the client's secret methods against the real server (`corral serve`).

Runs on SQLite, and on PostgreSQL too when CORRAL_TEST_POSTGRES_URL is set.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from corral.cli import secrets as secrets_cli
from corral.client import CorralAPIError, CorralClient, Secret
from corral.db.engine import make_engine, read_tx
from corral.db.tables import projects
from corral.services import keys as key_service, secrets as secret_service
from tests.e2e.conftest import Cli, LiveServer, failed, ok

VALUE = "hf_e2e-Very-Secret-31337"


@pytest.fixture
def admin(live_server: LiveServer, tmp_path: Path) -> Cli:
    return live_server.cli(tmp_path / "config.json", token=live_server.admin_token)


def as_json(result: Any) -> Any:
    return json.loads(ok(result))


def names(admin: Cli, project: str) -> list[str]:
    return [s["name"] for s in as_json(admin.invoke("secrets", "ls", "-p", project, "--json"))]


def test_set_from_stdin_ls_and_rm(live_server: LiveServer, admin: Cli, tmp_path: Path) -> None:
    project = "sec-e2e"
    ok(admin.invoke("projects", "create", project))
    ok(admin.invoke("quotas", "set", project, "local", "--gpu", "0", "--cpu", "0", "--memory", "0", "--unbounded"))
    assert "has no secrets" in ok(admin.invoke("secrets", "ls", "-p", project))

    # From standard input (the installed console script, as a user runs it): echo's newline is dropped.
    created = admin.run("secrets", "set", "-p", project, "HF_TOKEN", input=VALUE + "\n")
    assert "Created secret HF_TOKEN" in created.stderr, created.stderr
    assert VALUE not in created.stdout + created.stderr
    assert stored_values(live_server, project, {"HF_TOKEN": "HF_TOKEN"}) == {"HF_TOKEN": VALUE}
    listed = as_json(admin.invoke("secrets", "ls", "-p", project, "--json"))
    assert [(s["name"], s["created_by"]) for s in listed] == [("HF_TOKEN", "admin@localhost")]
    assert set(listed[0]) == {"project", "name", "created_by", "created_at", "updated_at"}
    table = ok(admin.invoke("secrets", "ls", "-p", project))
    assert "HF_TOKEN" in table and "admin@localhost" in table and VALUE not in table

    # Replaced from a file, byte for byte.
    value_file = tmp_path / "token.txt"
    value_file.write_text(VALUE + "-2\n")
    replaced = admin.invoke("secrets", "set", "-p", project, "HF_TOKEN", "--from-file", str(value_file), "--json")
    body = as_json(replaced)
    assert body["name"] == "HF_TOKEN" and body["updated_at"] >= body["created_at"] and "value" not in body
    # From a hidden prompt (asked twice) when standard input is a terminal.
    prompted = _invoke_with_terminal(admin, "secrets", "set", "-p", project, "WANDB", input="w-value\nw-value\n")
    assert "Repeat for confirmation" in ok(prompted) and "w-value" not in prompted.stdout
    assert "Created secret WANDB" in prompted.stderr
    assert names(admin, project) == ["HF_TOKEN", "WANDB"]
    # What the server stored, as a workload gets it: exactly what was given.
    assert stored_values(live_server, project, {"HF_TOKEN": "HF_TOKEN", "WANDB_API_KEY": "WANDB"}) == {
        "HF_TOKEN": VALUE + "-2\n", "WANDB_API_KEY": "w-value"}

    # The values reach workloads through `secrets` in the spec.
    with CorralClient(live_server.url, live_server.admin_token) as client:
        for secret in client.list_secrets(project):
            assert isinstance(secret, Secret) and secret.project == project
    refused = admin.invoke("workloads", "submit", "-t", "custom", "-n", "needs-secret", "-p", project,
                           "--command", "true", "--cpu", "100m", "--memory", "64Mi", "--set", "secrets.HF=nope")
    stderr = failed(refused, 1)
    assert "secrets.HF" in stderr and "'nope'" in stderr
    ok(admin.invoke("workloads", "submit", "-t", "custom", "-n", "with-secret", "-p", project, "--command", "true",
                    "--cpu", "100m", "--memory", "64Mi", "--set", "secrets.HF_TOKEN=HF_TOKEN"))

    assert "Deleted secret WANDB" in ok(admin.invoke("secrets", "rm", "-p", project, "WANDB"))
    assert "no secret named 'WANDB'" in failed(admin.invoke("secrets", "rm", "-p", project, "WANDB"), 1)
    assert names(admin, project) == ["HF_TOKEN"]

    # The value was never logged, and the key file was made owner-only in the data directory.
    log = live_server.log()
    assert VALUE not in log and "w-value" not in log
    key_file = live_server.database.data_dir / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() not in log


def stored_values(live_server: LiveServer, project: str, mapping: dict[str, str]) -> dict[str, str]:
    """The values the server would hand a workload (read beside it, with its key file)."""
    database = live_server.database
    engine = make_engine(database.url or f"sqlite:///{database.data_dir / 'corral.db'}", pool_size=1)
    try:
        with read_tx(engine) as conn:
            project_id = conn.execute(select(projects.c.id).where(projects.c.name == project)).scalar_one()
            keys = key_service.load(None, database.data_dir)
            return secret_service.resolve_for_workload(conn, project_id, mapping, keys)
    finally:
        engine.dispose()


def _invoke_with_terminal(cli: Cli, *args: str, input: str) -> Any:
    original = secrets_cli._stdin_is_terminal
    secrets_cli._stdin_is_terminal = lambda: True
    try:
        return cli.invoke(*args, input=input)
    finally:
        secrets_cli._stdin_is_terminal = original


def test_values_are_never_taken_from_the_command_line(live_server: LiveServer, admin: Cli) -> None:
    # A value given as an argument is a usage error, and nothing is sent.
    result = admin.run("secrets", "set", "-p", "default", "TOKEN", "the-value-on-the-command-line")
    assert result.returncode == 2, result.stderr
    assert "TOKEN" not in names(admin, "default")
    assert "empty" in failed(admin.invoke("secrets", "set", "-p", "default", "TOKEN", input=""), 2)
    assert "empty" in failed(admin.invoke("secrets", "set", "-p", "default", "TOKEN", input="\n"), 2)
    assert "TOKEN" not in names(admin, "default")


def test_client_and_cli_errors(live_server: LiveServer, admin: Cli) -> None:
    assert "not found" in failed(admin.invoke("secrets", "ls", "-p", "no-such-project"), 1)
    stderr = failed(admin.invoke("secrets", "set", "-p", "default", "bad name", input="x"), 1)
    assert "secret name" in stderr
    with CorralClient(live_server.url, live_server.admin_token) as client:
        secret = client.set_secret("default", "client-made", "v1")
        assert secret.name == "client-made" and secret.created_by == "admin@localhost"
        assert "v1" not in repr(secret)
        assert [s.name for s in client.list_secrets("default")].count("client-made") == 1
        client.delete_secret("default", "client-made")
        with pytest.raises(CorralAPIError) as raised:
            client.delete_secret("default", "client-made")
        assert raised.value.status_code == 404
        with pytest.raises(CorralAPIError) as raised:
            client.set_secret("default", "empty", "")
        assert raised.value.status_code == 422 and raised.value.field == "value"
