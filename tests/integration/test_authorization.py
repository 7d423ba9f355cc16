"""Who may do what, for every endpoint and role.

Anonymous callers get 401 everywhere; members see and change only their projects'
objects and get 404 for anything else (never 403: a project they cannot see does not
exist for them); member calls to admin-only actions on objects they can see get 403;
admins may do everything. A route missing from the matrix fails the test.
"""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute

from tests.integration.conftest import submit

# (method, path, body) -> expected status for: anonymous, outsider (carol), member (alice), admin.
# {wid}: a workload of project vision; {uid}: bob's user id; {tid}: a token of bob's;
# {who}: the caller's role (secret s-<role> exists in vision).
MATRIX = [
    ("GET", "/api/v1/users/me", None, (401, 200, 200, 200)),
    ("GET", "/api/v1/users", None, (401, 403, 403, 200)),
    ("POST", "/api/v1/users", {"email": "new-{who}@example.com"}, (401, 403, 403, 201)),
    ("GET", "/api/v1/users/{uid}", None, (401, 403, 403, 200)),
    ("PATCH", "/api/v1/users/{uid}", {"display_name": "Bobby"}, (401, 403, 403, 200)),
    ("GET", "/api/v1/tokens", None, (401, 200, 200, 200)),
    ("POST", "/api/v1/tokens", {"name": "ci"}, (401, 201, 201, 201)),
    ("DELETE", "/api/v1/tokens/{tid}", None, (401, 404, 404, 404)),  # bob's token: nobody else's to revoke
    ("GET", "/api/v1/projects", None, (401, 200, 200, 200)),
    ("POST", "/api/v1/projects", {"name": "new-{who}"}, (401, 403, 403, 201)),
    ("GET", "/api/v1/projects/vision", None, (401, 404, 200, 200)),
    ("PATCH", "/api/v1/projects/vision", {"description": "x"}, (401, 404, 403, 200)),
    ("DELETE", "/api/v1/projects/speech", None, (401, 404, 404, 409)),  # speech has live workloads
    ("GET", "/api/v1/projects/vision/members", None, (401, 404, 200, 200)),
    ("POST", "/api/v1/projects/vision/members", {"email": "bob@example.com"}, (401, 404, 403, 201)),
    ("DELETE", "/api/v1/projects/vision/members/alice@example.com", None, (401, 404, 403, 204)),
    ("GET", "/api/v1/projects/vision/events", None, (401, 404, 200, 200)),
    ("GET", "/api/v1/projects/vision/quotas", None, (401, 404, 200, 200)),
    ("GET", "/api/v1/projects/vision/quotas/gpu-a", None, (401, 404, 200, 200)),
    ("PUT", "/api/v1/projects/vision/quotas/gpu-a", {"guaranteed": {"gpu": 4}}, (401, 404, 403, 200)),
    ("PATCH", "/api/v1/projects/vision/quotas/gpu-a", {"guaranteed": {"gpu": 4}}, (401, 404, 403, 200)),
    # Prometheus metrics: administrators' tokens (or the scrape token: test_metrics.py).
    ("GET", "/metrics", None, (401, 403, 403, 200)),
    ("DELETE", "/api/v1/projects/vision/quotas/gpu-a", None, (401, 404, 403, 204)),
    ("GET", "/api/v1/projects/vision/secrets", None, (401, 404, 200, 200)),
    ("PUT", "/api/v1/projects/vision/secrets/s-{who}", {"value": "v"}, (401, 404, 200, 200)),
    ("DELETE", "/api/v1/projects/vision/secrets/s-{who}", None, (401, 404, 204, 204)),  # s-<role> exists
    ("GET", "/api/v1/clusters", None, (401, 200, 200, 200)),
    ("POST", "/api/v1/clusters", {"name": "c-{who}", "kind": "slurm"}, (401, 403, 403, 201)),
    ("GET", "/api/v1/clusters/gpu-a", None, (401, 404, 200, 200)),
    ("PATCH", "/api/v1/clusters/gpu-a", {"description": "x"}, (401, 403, 403, 200)),
    ("DELETE", "/api/v1/clusters/gpu-a", None, (401, 403, 403, 409)),  # it has workloads
    ("POST", "/api/v1/clusters/gpu-a/agent-token", None, (401, 403, 403, 200)),
    ("POST", "/api/v1/agent/heartbeat", {}, (401, 401, 401, 401)),  # agents only
    ("POST", "/api/v1/agent/component-statuses", {"updates": []}, (401, 401, 401, 401)),
    ("GET", "/api/v1/agent/work", None, (401, 401, 401, 401)),
    ("POST", "/api/v1/agent/found", {"items": []}, (401, 401, 401, 401)),
    ("PUT", "/api/v1/agent/models", {"models": []}, (401, 401, 401, 401)),
    ("POST", "/api/v1/agent/usage", {"samples": []}, (401, 401, 401, 401)),
    ("GET", "/api/v1/workloads/{wid}/usage", None, (401, 404, 200, 200)),
    ("GET", "/api/v1/projects/vision/quota-history", None, (401, 404, 200, 200)),
    # Allocation over time: administrators only (a cluster's page of charts is theirs).
    ("GET", "/api/v1/clusters/gpu-a/allocation-history", None, (401, 403, 403, 200)),
    ("GET", "/api/v1/models", None, (401, 200, 200, 200)),  # each sees their projects' (test_models_api.py)
    ("GET", "/api/v1/models?project=vision", None, (401, 404, 200, 200)),
    ("GET", "/api/v1/models/{mid}", None, (401, 404, 200, 200)),  # {mid}: a model of project vision
    ("GET", "/api/v1/evaluations?project=vision", None, (401, 404, 200, 200)),
    ("POST", "/api/v1/workloads", "SUBMIT", (401, 404, 201, 201)),
    ("GET", "/api/v1/workloads?project=vision", None, (401, 404, 200, 200)),
    ("GET", "/api/v1/workloads/stats?project=vision", None, (401, 404, 200, 200)),
    ("GET", "/api/v1/workloads.csv?project=vision", None, (401, 404, 200, 200)),
    ("GET", "/api/v1/workloads/{wid}", None, (401, 404, 200, 200)),
    ("DELETE", "/api/v1/workloads/{wid}", None, (401, 404, 202, 202)),
    ("POST", "/api/v1/workloads/delete", {"filter": {"project": "vision"}}, (401, 404, 200, 200)),
    # No agent runs here: the workload never started, so it has no output yet (409).
    ("GET", "/api/v1/workloads/{wid}/logs", None, (401, 404, 409, 409)),
    # Path-based serving on Corral's origin is off (CORRAL_PATH_PROXY_UNSAFE): 404 for everyone.
    # Workloads are served on origins of their own: test_workload_origin.py.
    *((method, path, None, (404, 404, 404, 404))
      for path in ("/proxy/{wid}", "/proxy/{wid}/lab/tree")
      for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")),
]
ROLES = ("anonymous", "outsider", "member", "admin")
# The liveness probe and the API's documentation (bundled pages, the same for everyone):
# they say nothing about anyone's data. test_public_routes_answer_anyone checks they answer.
PUBLIC = {("GET", "/healthz"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"), ("GET", "/redoc"),
          ("GET", "/docs/assets/{name}")}


@pytest.fixture
def ids(world):
    wids = {}
    for role in ROLES:
        created = submit(world.alice, name=f"w-{role}")
        assert created.status_code == 201
        wids[role] = created.json()["id"]
    assert submit(world.bob, project="speech").status_code == 201
    users = world.admin.get("/api/v1/users").json()
    bob = next(u for u in users if u["email"] == "bob@example.com")
    token = world.bob.post("/api/v1/tokens", json={"name": "bob's"}).json()
    for role in ROLES:
        assert world.alice.put(f"/api/v1/projects/vision/secrets/s-{role}", json={"value": "x"}).status_code == 200
    models = {"models": [{"project": "vision", "name": "m"}]}
    assert world.api.as_token(world.agent_token).put("/api/v1/agent/models", json=models).status_code == 200
    mid = world.admin.get("/api/v1/models").json()["items"][0]["id"]
    return {"wids": wids, "uid": bob["id"], "tid": token["id"], "mid": mid}


@pytest.mark.parametrize(("method", "path", "body", "expected"), MATRIX,
                         ids=[f"{m} {p}" for m, p, _, _ in MATRIX])
def test_matrix(world, ids, method, path, body, expected):
    clients = {"anonymous": world.api.anonymous, "outsider": world.carol, "member": world.alice,
               "admin": world.admin}
    for role, want in zip(ROLES, expected):
        url = path.format(wid=ids["wids"][role], uid=ids["uid"], tid=ids["tid"], who=role, mid=ids["mid"])
        payload = body
        if body == "SUBMIT":
            payload = {"type": "custom", "name": f"by-{role}", "project": "vision", "command": "true"}
        elif isinstance(body, dict):
            payload = {k: v.format(who=role) if isinstance(v, str) else v for k, v in body.items()}
        response = clients[role].request(method, url, json=payload)
        assert response.status_code == want, f"{role}: {method} {url} -> {response.status_code} {response.text}"
        if want >= 400 and method != "HEAD":  # a HEAD answer has no body
            error = response.json()["error"]
            assert error["code"] and error["message"], response.text


def test_every_route_is_in_the_matrix(api):
    covered = {(m, p.split("?")[0]) for m, p, _, _ in MATRIX}
    templated = set()
    for route, path in _api_routes(api.client.app):
        if route.endpoint.__module__.startswith("corral.web."):
            continue  # the web UI's pages have their own table: test_web_access.py
        for method in route.methods:
            templated.add((method, path))
    normalise = {"{user_id}": "{uid}", "{token_id}": "{tid}", "{workload_id}": "{wid}", "{name}": "vision",
                 "{cluster}": "gpu-a", "{email}": "alice@example.com", "{secret}": "s-{who}",
                 "{path:path}": "lab/tree", "{model_id}": "{mid}"}
    missing = []
    for method, path in sorted(templated):
        concrete = path
        for k, v in normalise.items():
            concrete = concrete.replace(k, v)
        variants = {concrete, concrete.replace("/vision", "/speech"), concrete.replace("/vision", "/gpu-a")}
        if (method, path) not in PUBLIC and not any((method, v) in covered for v in variants):
            missing.append(f"{method} {path}")
    assert missing == []


@pytest.mark.parametrize("token", [None, "crl_not-a-real-token", "crla_not-a-real-agent-token"])
def test_a_bad_token_is_refused_before_a_bad_body(world, ids, token):
    """401, not 422: whoever has no valid token learns nothing about what a route accepts."""
    client = world.api.anonymous if token is None else world.api.as_token(token)
    answers = {}
    for method, path, body, _ in MATRIX:
        if body is None:
            continue
        url = path.format(wid=ids["wids"]["member"], uid=ids["uid"], tid=ids["tid"], who="member", mid=ids["mid"])
        response = client.request(method, url, json={"updates": "not a list", "name": 7, "items": 3})
        answers[f"{method} {url}"] = response.status_code
    assert answers and set(answers.values()) == {401}, {k: v for k, v in answers.items() if v != 401}


def _api_routes(app):
    """(APIRoute, full path) of every route, through included routers too: FastAPI 0.165+
    includes routers lazily, so app.routes alone would hold none of them."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: included routes are copied into app.routes
        return [(r, r.path) for r in app.routes if isinstance(r, APIRoute)]
    return [(c.original_route, c.path) for c in iter_route_contexts(app.routes)
            if isinstance(c.original_route, APIRoute)]


def test_public_routes_answer_anyone(api):
    for path in ("/healthz", "/docs", "/docs/oauth2-redirect", "/redoc"):
        response = api.client.get(path, headers={"Authorization": ""})
        assert response.status_code == 200, f"{path}: {response.status_code}"


def test_route_listing_sees_included_routers(api):
    paths = {path for _, path in _api_routes(api.client.app)}
    assert {"/api/v1/users/me", "/api/v1/projects/{name}/secrets", "/healthz"} <= paths


def test_member_list_without_project_shows_only_their_projects(world):
    submit(world.alice, name="mine")
    submit(world.bob, name="theirs", project="speech")
    names = {w["name"] for w in world.alice.get("/api/v1/workloads").json()["items"]}
    assert names == {"mine"}
    assert world.carol.get("/api/v1/workloads").json() == {
        "items": [], "page": 1, "page_size": 20, "total": 0, "total_exact": True, "next_cursor": None,
        "prev_cursor": None}
    admin_names = {w["name"] for w in world.admin.get("/api/v1/workloads").json()["items"]}
    assert admin_names == {"mine", "theirs"}


def test_member_sees_only_clusters_where_their_project_has_quota(world):
    assert [c["name"] for c in world.alice.get("/api/v1/clusters").json()] == ["gpu-a"]
    assert world.carol.get("/api/v1/clusters").json() == []


def test_revoked_and_expired_tokens_are_refused(world):
    created = world.alice.post("/api/v1/tokens", json={"name": "short"}).json()
    client = world.api.as_token(created["token"])
    assert client.get("/api/v1/users/me").status_code == 200
    assert world.alice.delete(f"/api/v1/tokens/{created['id']}").json()["revoked"] is True
    refused = client.get("/api/v1/users/me")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthenticated"
    assert world.api.as_token("crl_not-a-real-token").get("/api/v1/users/me").status_code == 401


def test_disabled_user_is_refused(world, ids):
    assert world.admin.patch(f"/api/v1/users/{ids['uid']}", json={"disabled": True}).status_code == 200
    assert world.bob.get("/api/v1/users/me").status_code == 401


def test_tokens_are_shown_once_and_stored_hashed(world):
    created = world.alice.post("/api/v1/tokens", json={"name": "once"}).json()
    assert created["token"].startswith("crl_")
    listed = world.alice.get("/api/v1/tokens").json()
    assert all("token" not in t for t in listed)
    assert created["token"] not in str(listed)
    from sqlalchemy import select

    from corral.db.tables import api_tokens

    with world.api.engine.connect() as conn:
        stored = [r[0] for r in conn.execute(select(api_tokens.c.token_hash))]
    assert created["token"] not in stored and len(stored[0]) == 64


def test_agent_token_works_only_for_agent_endpoints(world):
    agent = world.api.as_token(world.agent_token)
    assert agent.post("/api/v1/agent/heartbeat", json={}).status_code == 200
    assert agent.get("/api/v1/users/me").status_code == 401
