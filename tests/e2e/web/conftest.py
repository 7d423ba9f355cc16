"""Browser tests: the real server (`corral serve`) driven by a real Chromium through Playwright.

Chromium is the system's (/usr/bin/chromium, installed by .ci/run); Playwright never
downloads a browser. Data is set up the way users and clusters set it up: through the
REST API with the bootstrapped admin's token, passwords with `corral users set-password`,
and statuses reported by the cluster's agent through its endpoint. Screenshots of the
main pages go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from tests.e2e.conftest import Cli, LiveServer, make_database, ok, start_server, stop_server

CHROMIUM = os.environ.get("CORRAL_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "screenshots"
PASSWORD = "correct horse battery staple"
CLUSTER = "gpu-a"

expect.set_options(timeout=10_000)


# --------------------------------------------------------------------------- the browser

@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does it)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-GB", timezone_id="UTC")
    context.set_default_timeout(10_000)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, base_url: str, email: str, password: str = PASSWORD, next_path: str = "") -> None:
    page.goto(f"{base_url}/sign-in" + (f"?next={next_path}" if next_path else ""))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


# --------------------------------------------------------------------------- the world

@dataclass
class World:
    """A live server, its admin's API client, one GPU cluster with an agent we play, users."""

    server: LiveServer
    admin: httpx.Client
    agent: httpx.Client
    cli: Cli
    users: set[str] = field(default_factory=set)
    _names: Iterator[int] = field(default_factory=itertools.count)

    @property
    def url(self) -> str:
        return self.server.url

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{next(self._names)}"

    def user(self, email: str, role: str = "member") -> str:
        """A user who can sign in with PASSWORD (set with `corral users set-password`)."""
        if email not in self.users:
            created = self.admin.post("/api/v1/users", json={"email": email, "role": role})
            assert created.status_code == 201, created.text
            password_file = self.server.database.data_dir / f"password-{email}"
            password_file.write_text(PASSWORD + "\n")
            ok(self.cli.invoke("users", "set-password", email, "--password-file", str(password_file)))
            password_file.unlink()
            self.users.add(email)
        return email

    def project(self, prefix: str, *members: str, gpu: int = 8) -> str:
        """A new project with a quota on the GPU cluster, and these members."""
        name = self.unique(prefix)
        assert self.admin.post("/api/v1/projects", json={"name": name}).status_code == 201
        for email in members:
            added = self.admin.post(f"/api/v1/projects/{name}/members", json={"email": self.user(email)})
            assert added.status_code == 201, added.text
        quota = self.admin.put(f"/api/v1/projects/{name}/quotas/{CLUSTER}",
                               json={"guaranteed": {"gpu": gpu, "cpu": 64, "memory": "1Ti"}})
        assert quota.status_code == 200, quota.text
        return name

    def heartbeat(self) -> None:
        assert self.agent.post("/api/v1/agent/heartbeat", json={}).status_code == 200

    def submit(self, project: str, name: str, type: str = "custom", **extra: Any) -> int:
        body: dict[str, Any] = {"type": type, "name": name, "project": project, "cluster": CLUSTER,
                                "resources": {"gpu": 1, "cpu": 2, "memory": "8Gi"}}
        if type == "custom":
            body["command"] = "sleep 1000"
        elif type in ("training", "pre_training"):
            body.update(dataset="s3://data/set", command="python train.py")
        elif type == "fine_tuning":
            body.update(base_model="llama", dataset="alpaca", command="python ft.py")
        elif type == "inference":
            body["model"] = "meta-llama/Llama-3.1-8B"
        elif type == "model_download":
            body["source"] = "meta-llama/Llama-3.1-8B"
        elif type == "evaluation":
            body.update(model="llama", tasks=["mmlu"], command="lm-eval")
        body.update(extra)
        self.heartbeat()
        created = self.admin.post("/api/v1/workloads", json=body)
        assert created.status_code == 201, created.text
        return created.json()["id"]

    def detail(self, wid: int) -> dict[str, Any]:
        response = self.admin.get(f"/api/v1/workloads/{wid}")
        assert response.status_code == 200, response.text
        return response.json()

    def admitted(self, wid: int, timeout: float = 15) -> dict[str, Any]:
        """The workload once the server's admission loop has admitted it."""
        deadline = time.monotonic() + timeout
        while True:
            detail = self.detail(wid)
            if detail["admitted_at"] or time.monotonic() > deadline:
                assert detail["admitted_at"], f"workload {wid} was not admitted: {detail['status_reason']}"
                return detail
            time.sleep(0.05)

    def report(self, wid: int, status: str, reason: str = "") -> dict[str, Any]:
        """The cluster's agent reports every component of the workload in this status."""
        detail = self.admitted(wid)
        at = datetime.now(UTC).isoformat()
        updates = [{"component_id": c["id"], "status": status, "reason": reason or f"component {status.lower()}",
                    "observed_at": at} for c in detail["components"]]
        response = self.agent.post("/api/v1/agent/component-statuses", json={"updates": updates})
        assert response.status_code == 200 and response.json()["applied"] == len(updates), response.text
        return self.detail(wid)


@pytest.fixture(scope="package")
def _databases() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def make_world(kind: str, root: Path, databases: ExitStack,
               env_extra: dict[str, str] | None = None) -> tuple[World, LiveServer]:
    database = make_database(kind, root / "data", databases)
    server = start_server(database, root / "server.log", env_extra=env_extra)
    admin = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token}"}, timeout=30)
    cluster = admin.post("/api/v1/clusters", json={
        "name": CLUSTER, "kind": "kubernetes",
        "capacity": {"gpu": 100_000, "cpu": 1_000_000, "memory": "50000Ti", "ephemeral_storage": "50000Ti"}})
    assert cluster.status_code == 201, cluster.text
    agent = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {cluster.json()['agent_token']}"},
                         timeout=30)
    cli = Cli(dict(database.env))
    world = World(server, admin, agent, cli)
    world.heartbeat()
    return world, server


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory, _databases: ExitStack) -> Iterator[World]:
    """`corral serve` on a fresh SQLite database, shared by the browser tests (each makes its own projects)."""
    world, server = make_world("sqlite", tmp_path_factory.mktemp("web-sqlite"), _databases)
    yield world
    world.admin.close()
    world.agent.close()
    stop_server(server)
