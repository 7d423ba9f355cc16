"""Who may open which page of the web UI, on both databases.

Every page checks who is asking: without a session it sends the browser to sign in
(303 to /sign-in), a script's request gets 401, and a form without the session's CSRF
token is refused (403). Members see only their projects (404 otherwise) and get 403 for
admin-only forms. A web route missing from the table below fails the test.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import update

from corral.db.engine import write_tx
from corral.db.tables import web_sessions
from corral.services import passwords
from corral.services.clock import utcnow
from corral.services.principal import SYSTEM
from tests.integration.conftest import submit
from tests.integration.conftest import WEB_PASSWORD, web_sign_in

PASSWORD = WEB_PASSWORD
PUBLIC = {("GET", "/sign-in"), ("POST", "/sign-in"), ("GET", "/static/{name:path}")}

# (method, path, form) -> expected status for: member of vision (alice), outsider (carol), admin.
# {wid}: a workload of project vision; {tid}: a token of the caller's own.
PAGES = [
    ("GET", "/", None, (303, 303, 303)),
    ("GET", "/workloads", None, (200, 200, 200)),
    ("GET", "/workloads?project=vision", None, (200, 404, 200)),
    ("GET", "/workloads.csv?project=vision", None, (200, 404, 200)),
    ("GET", "/workloads/new", None, (200, 200, 200)),
    ("POST", "/workloads/new", {"type": "custom", "name": "w", "project": "vision", "command": "true"},
     (303, 422, 303)),
    ("GET", "/workloads/{wid}", None, (200, 404, 200)),
    ("GET", "/workloads/{wid}/delete", None, (200, 404, 200)),
    ("GET", "/workloads/{wid}/open", None, (409, 404, 409)),  # it serves nothing (test_workload_origin.py)
    ("POST", "/workloads/{wid}/delete", {}, (303, 404, 303)),
    # A preview (the confirmation): another project's workloads are listed as not found.
    ("POST", "/workloads/delete-selected", {"ids": "1"}, (200, 200, 200)),
    ("GET", "/projects", None, (200, 200, 200)),
    ("POST", "/projects", {"name": "new-{who}"}, (403, 403, 303)),
    ("GET", "/projects/vision", None, (200, 404, 200)),
    ("POST", "/projects/vision", {"description": "x"}, (403, 404, 303)),
    ("POST", "/projects/speech/delete", {}, (404, 404, 409)),  # speech has live workloads
    ("POST", "/projects/vision/members", {"email": "bob@example.com"}, (403, 404, 303)),
    ("POST", "/projects/vision/members/remove", {"email": "dave@example.com"}, (403, 404, 303)),
    ("POST", "/projects/vision/quotas", {"cluster": "gpu-a", "guaranteed_gpu": "4"}, (403, 404, 303)),
    ("POST", "/projects/vision/quotas/delete", {"cluster": "gpu-a"}, (403, 404, 303)),
    ("GET", "/models", None, (200, 200, 200)),
    ("GET", "/models?project=vision", None, (200, 404, 200)),
    ("GET", "/models/{mid}", None, (200, 404, 200)),  # {mid}: a model of project vision
    ("GET", "/evaluations?project=vision", None, (200, 404, 200)),
    ("GET", "/clusters", None, (200, 200, 200)),
    ("POST", "/clusters", {"name": "c-{who}", "kind": "slurm"}, (403, 403, 201)),
    ("POST", "/clusters/gpu-a/agent-token", {}, (403, 403, 200)),
    ("POST", "/clusters/gpu-a/delete", {}, (403, 403, 409)),  # it has workloads (removal: test_admin_pages.py)
    ("GET", "/tokens", None, (200, 200, 200)),
    ("POST", "/tokens", {"name": "ci"}, (201, 201, 201)),
    ("POST", "/tokens/{tid}/revoke", {}, (303, 303, 303)),
    ("POST", "/sign-out", {}, (303, 303, 303)),
]
WHO = ("member", "outsider", "admin")


_sign_in = web_sign_in  # (tests.integration.conftest)


@pytest.fixture
def browsers(world):  # type: ignore[no-untyped-def]
    api = world.api
    api.user("dave@example.com")
    assert world.admin.post("/api/v1/projects/vision/members", json={"email": "dave@example.com"}).status_code == 201
    clients = {"member": _sign_in(api, "alice@example.com"), "outsider": _sign_in(api, "carol@example.com"),
               "admin": _sign_in(api, "admin@example.com", "admin")}
    wid = submit(world.alice, name="page-target").json()["id"]
    assert submit(world.bob, project="speech").status_code == 201
    agent = api.as_token(world.agent_token)
    assert agent.put("/api/v1/agent/models", json={"models": [{"project": "vision", "name": "m"}]}).status_code == 200
    mid = world.admin.get("/api/v1/models").json()["items"][0]["id"]
    return clients, wid, mid


@pytest.mark.parametrize(("method", "path", "form", "expected"), PAGES, ids=[f"{m} {p}" for m, p, _, _ in PAGES])
def test_pages(world, browsers, method, path, form, expected):  # type: ignore[no-untyped-def]
    clients, wid, mid = browsers
    for who, want in zip(WHO, expected):
        client, csrf = clients[who]
        tid = ""
        if "{tid}" in path:
            created = client.post("/tokens", data={"name": "to-revoke", "csrf_token": csrf})
            tid = re.findall(r'action="/tokens/(\d+)/revoke"', created.text)[0]
        url = path.format(wid=wid, tid=tid, mid=mid)
        if method == "GET":
            response = client.get(url)
        else:
            data = {k: v.format(who=who) for k, v in (form or {}).items()}
            # Without the CSRF token first: refused, and nothing happens.
            assert client.post(url, data=data).status_code == 403, f"{who}: {url} without CSRF"
            response = client.post(url, data={**data, "csrf_token": csrf})
        assert response.status_code == want, f"{who}: {method} {url} -> {response.status_code}\n{response.text[:800]}"
        if response.headers.get("content-type", "").startswith("text/html"):
            assert "Content-Security-Policy" in response.headers
            assert "Traceback" not in response.text


@pytest.mark.parametrize(("method", "path", "form", "expected"), PAGES, ids=[f"{m} {p}" for m, p, _, _ in PAGES])
def test_pages_send_strangers_to_sign_in(api, method, path, form, expected):  # type: ignore[no-untyped-def]
    url = path.format(wid=1, tid=1, mid=1)
    response = api.client.request(method, url, data=form and {**form, "csrf_token": "x"}, follow_redirects=False)
    assert response.status_code == 303, f"{method} {url} -> {response.status_code}"
    assert response.headers["location"].startswith("/sign-in")
    script = api.client.request(method, url, headers={"X-Requested-With": "fetch"}, follow_redirects=False)
    assert script.status_code == 401 and script.json()["error"]["sign_in"].startswith("/sign-in")


def _routes(app):  # type: ignore[no-untyped-def]
    """Every route, through included routers too: FastAPI 0.165+ includes routers lazily,
    so app.routes alone holds none of the pages."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: included routes are copied into app.routes
        return list(app.routes)
    return [c.original_route for c in iter_route_contexts(app.routes)]


def test_every_web_route_is_in_the_table(api):  # type: ignore[no-untyped-def]
    covered = {(m, p.split("?")[0]) for m, p, _, _ in PAGES}
    missing = []
    for route in _routes(api.client.app):
        if not isinstance(route, APIRoute) or not route.endpoint.__module__.startswith("corral.web."):
            continue
        path = (route.path.replace("{workload_id:int}", "{wid}").replace("{token_id}", "{tid}")
                .replace("{model_id:int}", "{mid}")
                .replace("{name}", "vision"))
        for method in route.methods:
            variants = {path, path.replace("/vision", "/speech"), path.replace("/vision", "/gpu-a")}
            if (method, route.path) not in PUBLIC and not any((method, v) in covered for v in variants):
                missing.append(f"{method} {route.path}")
    assert missing == []


def test_a_copied_session_cookie_dies_with_sign_out_expiry_or_a_disabled_user(world):  # type: ignore[no-untyped-def]
    api = world.api
    client, csrf = _sign_in(api, "alice@example.com")
    cookie = client.cookies.get("corral_session")
    thief = type(client)(api.client.app, follow_redirects=False, cookies={"corral_session": cookie})
    assert thief.get("/workloads").status_code == 200
    assert client.post("/sign-out", data={"csrf_token": csrf}).status_code == 303
    assert thief.get("/workloads").status_code == 303

    client, _ = _sign_in(api, "alice@example.com")
    with write_tx(api.engine) as conn:
        conn.execute(update(web_sessions).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert client.get("/workloads").status_code == 303

    client, _ = _sign_in(api, "bob@example.com")
    bob = next(u for u in world.admin.get("/api/v1/users").json() if u["email"] == "bob@example.com")
    assert world.admin.patch(f"/api/v1/users/{bob['id']}", json={"disabled": True}).status_code == 200
    assert client.get("/workloads").status_code == 303


def test_sign_in_refuses_a_form_without_its_own_token(api):  # type: ignore[no-untyped-def]
    api.user("erin@example.com")
    with write_tx(api.engine) as conn:
        passwords.set_password(conn, email="erin@example.com", password=PASSWORD, actor=SYSTEM)
    # A page of another site cannot read or set the sign-in cookie, so it cannot sign a victim in.
    forged = api.client.post("/sign-in", data={"email": "erin@example.com", "password": PASSWORD,
                                               "csrf_token": "guess"}, follow_redirects=False)
    assert forged.status_code == 403 and "corral_session" not in forged.cookies


def test_passwords_are_stored_as_argon2_hashes(world):  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from corral.db.tables import users

    _sign_in(world.api, "alice@example.com")
    with world.api.engine.connect() as conn:
        stored = conn.execute(select(users.c.password_hash).where(users.c.email == "alice@example.com")).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    with pytest.raises(Exception, match="at least 8"):
        passwords.hash_password("short")
