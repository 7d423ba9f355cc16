"""An API under test: the real ASGI app over a real database, driven through httpx."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from corral.api.app import create_app
from corral.db.engine import write_tx
from corral.services import users as user_service
from corral.services.principal import SYSTEM
from corral.settings import Settings


@dataclass
class Api:
    """The app, plus a way to mint users the way `corral users create` does."""

    client: TestClient
    engine: Engine
    tokens: dict[str, str] = field(default_factory=dict)

    def user(self, email: str, role: str = "member") -> httpx.Client:
        """An HTTP client authenticated as a (new) user with that role."""
        if email not in self.tokens:
            with write_tx(self.engine) as conn:
                user = user_service.create_user(conn, email=email, display_name=None, role=role, actor=SYSTEM)
                secret, _ = user_service.create_token(conn, user_id=user["id"], name="test", expires_at=None,
                                                      actor=SYSTEM)
            self.tokens[email] = secret
        return self.as_token(self.tokens[email])

    def as_token(self, token: str) -> Any:
        return _Authed(self.client, token)

    @property
    def anonymous(self) -> TestClient:
        return self.client


class _Authed:
    """The test client with a bearer token on every request."""

    def __init__(self, client: TestClient, token: str) -> None:
        self._client = client
        self._headers = {"Authorization": f"Bearer {token}"}

    def __getattr__(self, method: str) -> Any:
        call = getattr(self._client, method)

        def with_token(*args: Any, **kwargs: Any) -> httpx.Response:
            kwargs["headers"] = {**self._headers, **(kwargs.get("headers") or {})}
            return call(*args, **kwargs)

        return with_token


@pytest.fixture
def api(engine: Engine, tmp_path) -> Iterator[Api]:  # type: ignore[no-untyped-def]
    # The app alone runs no admission loop (`corral serve` starts it): tests call run_pass.
    settings = Settings(data_dir=tmp_path, database_url=str(engine.url), bootstrap=False)
    app = create_app(settings, engine)
    with TestClient(app, raise_server_exceptions=True) as client:
        yield Api(client=client, engine=engine)


@dataclass
class World:
    """Two projects on one healthy cluster, an admin, a member of each project, an outsider."""

    api: Api
    admin: Any
    alice: Any  # member of vision
    bob: Any  # member of speech
    carol: Any  # member of no project
    cluster: str = "gpu-a"
    agent_token: str = ""


def heartbeat(api: Api, agent_token: str, **capacity: Any) -> httpx.Response:
    body: dict[str, Any] = {}
    if capacity:
        body["capacity"] = capacity
    return api.as_token(agent_token).post("/api/v1/agent/heartbeat", json=body)


@pytest.fixture
def world(api: Api) -> World:
    admin = api.user("admin@example.com", "admin")
    alice, bob, carol = api.user("alice@example.com"), api.user("bob@example.com"), api.user("carol@example.com")
    created = admin.post("/api/v1/clusters", json={
        "name": "gpu-a", "kind": "kubernetes",
        "capacity": {"gpu": 16, "cpu": 128, "memory": "1Ti", "ephemeral_storage": "10Ti"}})
    assert created.status_code == 201, created.text
    agent_token = created.json()["agent_token"]
    assert heartbeat(api, agent_token).status_code == 200
    for project, member in (("vision", "alice@example.com"), ("speech", "bob@example.com")):
        assert admin.post("/api/v1/projects", json={"name": project}).status_code == 201
        assert admin.post(f"/api/v1/projects/{project}/members", json={"email": member}).status_code == 201
        quota = admin.put(f"/api/v1/projects/{project}/quotas/gpu-a",
                          json={"guaranteed": {"gpu": 8, "cpu": 64, "memory": "512Gi"}})
        assert quota.status_code == 200, quota.text
    return World(api, admin, alice, bob, carol, agent_token=agent_token)


WEB_PASSWORD = "a fine long password"


def web_sign_in(api: Api, email: str, role: str = "member") -> tuple[TestClient, str]:
    """A browser-like client (cookies kept) signed in to the web UI as this user (created,
    with WEB_PASSWORD); its CSRF token."""
    import re

    from corral.services import passwords

    api.user(email, role)
    with write_tx(api.engine) as conn:
        passwords.set_password(conn, email=email, password=WEB_PASSWORD, actor=SYSTEM)
    client = TestClient(api.client.app, follow_redirects=False)
    form = client.get("/sign-in")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    signed_in = client.post("/sign-in", data={"email": email, "password": WEB_PASSWORD, "csrf_token": token})
    assert signed_in.status_code == 303, signed_in.text
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/tokens").text).group(1)  # type: ignore[union-attr]
    return client, csrf


def submit(client: Any, **overrides: Any) -> httpx.Response:
    body: dict[str, Any] = {"type": "custom", "name": "job", "project": "vision", "command": "echo hi",
                            "resources": {"gpu": 1, "cpu": 2, "memory": "8Gi"}}
    body.update(overrides)
    return client.post("/api/v1/workloads", json=body)
