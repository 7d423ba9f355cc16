"""What a `corral` call loads when the server answers (tests/unit/test_cli_imports.py
covers the calls that fail to reach one): the standard library's HTTP, never httpx; rich
only where people read the output, never for --json. A heavy import added back to these
paths fails here (bench/cli_startup.py measures what they cost)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import LiveServer
from tests.unit.test_cli_imports import HTTP_LIBRARIES, SERVER_SIDE, loaded, run_cli

SUBMIT = ("workloads", "submit", "--type", "custom", "-p", "default", "--command", "true", "--name")


@pytest.mark.parametrize("args", [("workloads", "ls", "--json"), (*SUBMIT, "imports-json", "--json"),
                                  ("workloads", "get", "1", "--json"), ("whoami", "--json"),
                                  ("projects", "ls", "--json")])
def test_json_output_loads_neither_rich_nor_httpx(live_server: LiveServer, args: tuple[str, ...]) -> None:
    code, modules, stderr = run_cli(*args, server=live_server.url, token=live_server.admin_token)
    assert code == 0, stderr
    assert loaded(modules, ("rich", "typer.rich_utils", "yaml") if "submit" not in args else ("rich",)) == []
    assert loaded(modules, HTTP_LIBRARIES + SERVER_SIDE) == []


@pytest.mark.parametrize("args", [("workloads", "ls"), (*SUBMIT, "imports-table"), ("workloads", "get", "1")])
def test_output_for_people_loads_rich_but_no_httpx(live_server: LiveServer, args: tuple[str, ...]) -> None:
    code, modules, stderr = run_cli(*args, server=live_server.url, token=live_server.admin_token)
    assert code == 0, stderr
    assert "rich.console" in modules  # it did print for people
    assert loaded(modules, HTTP_LIBRARIES + SERVER_SIDE) == []
