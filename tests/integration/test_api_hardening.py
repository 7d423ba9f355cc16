"""Hostile input and faults against the real app (SQLite and PostgreSQL): each attack that
once gave a 500, wedged a workload or locked everyone out now fails cleanly."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from corral.db.engine import PING_IDLE_AFTER_S, make_engine
from corral.services.admission import run_pass
from tests.integration.conftest import submit


def _invalid(response, field: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    """A 422 in the one error shape (on the field, when given)."""
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert set(error) >= {"code", "message", "field"} and error["code"] == "invalid"
    if field is not None:
        assert error["field"] == field, error
    return error


# ----------------------------------------------------------------------------- numbers and ids

@pytest.mark.parametrize("path", ["/api/v1/workloads/{}", "/api/v1/users/{}", "/api/v1/workloads/{}/logs"])
@pytest.mark.parametrize("value", [2**63, 2**64 + 5, 0, -1])
def test_ids_outside_the_database_range_are_invalid_not_a_crash(world, path, value):
    _invalid(world.admin.get(path.format(value)))


@pytest.mark.parametrize("method, path", [("GET", "/workloads/{}"), ("GET", "/workloads/{}/delete"),
                                          ("GET", "/workloads/{}/open"), ("POST", "/tokens/{}/revoke")])
def test_web_pages_with_ids_outside_the_range_answer_an_invalid_input_page(api, method, path):
    from tests.integration.test_web_access import _sign_in

    client, csrf = _sign_in(api, "admin@example.com", "admin")
    response = client.request(method, path.format(2**64), data={"csrf_token": csrf} if method == "POST" else None)
    assert response.status_code == 422 and "text/html" in response.headers["content-type"], response.text[:300]


def test_ids_inside_the_range_that_name_nothing_are_not_found(world):
    assert world.admin.get(f"/api/v1/workloads/{2**63 - 1}").status_code == 404
    assert world.admin.delete(f"/api/v1/tokens/{2**63 - 1}").status_code == 404


def test_a_huge_page_number_is_invalid(world):
    _invalid(world.alice.get("/api/v1/workloads", params={"page": 10**30}), "page")
    _invalid(world.alice.get("/api/v1/workloads", params={"page": 2**62}), "page")
    assert world.alice.get("/api/v1/workloads", params={"page": 1000}).json()["items"] == []


@pytest.mark.parametrize("resources", [
    {"memory": 2**63}, {"memory": str(2**63)}, {"memory": "9" * 40 + "Pi"}, {"memory": 1e300},
    {"ephemeral_storage": None}, {"cpu": None}, {"cpu": 2**62}, {"memory": [1]}, {"memory": True},
])
def test_quantities_that_the_database_cannot_hold_or_that_are_not_numbers_are_invalid(world, resources):
    _invalid(submit(world.alice, resources=resources))


def test_capacity_and_quota_numbers_are_bounded_too(world):
    _invalid(world.admin.post("/api/v1/clusters", json={"name": "big", "kind": "slurm",
                                                         "capacity": {"gpu": 2**63}}))
    _invalid(world.admin.put("/api/v1/projects/vision/quotas/gpu-a",
                             json={"guaranteed": {"gpu": 1}, "limit": {"memory": 2**64}}))
    _invalid(world.api.as_token(world.agent_token).post("/api/v1/agent/heartbeat",
                                                         json={"capacity": {"ephemeral_storage": 2**63}}))
    _invalid(world.api.as_token(world.agent_token).post("/api/v1/agent/component-statuses", json={"updates": [
        {"component_id": 2**63, "status": "Running", "observed_at": datetime.now(UTC).isoformat()}]}))


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+14:00"])
def test_times_that_leave_the_calendar_once_in_utc_are_invalid(world, moment):
    _invalid(world.alice.post("/api/v1/tokens", json={"name": "t", "expires_at": moment}), "expires_at")
    agent = world.api.as_token(world.agent_token)
    _invalid(agent.post("/api/v1/agent/component-statuses", json={"updates": [
        {"component_id": 1, "status": "Running", "observed_at": moment}]}), "updates.0.observed_at")
    _invalid(agent.post("/api/v1/agent/found", json={"items": [{"native_name": "p", "started_at": moment}]}),
             "items.0.started_at")


# ----------------------------------------------------------------------------- text

def test_a_lone_surrogate_anywhere_in_a_body_is_invalid(world):
    # Sent as raw JSON: the escape itself is the attack (no encoder would write it).
    for path, body in [
        ("/api/v1/workloads", '{"type": "custom", "name": "a\\ud800b", "project": "vision", "command": "x"}'),
        ("/api/v1/projects", '{"name": "p1", "description": "\\udfff"}'),
        ("/api/v1/users", '{"email": "x\\ud800@example.com"}'),
    ]:
        response = world.admin.post(path, content=body, headers={"Content-Type": "application/json"})
        error = _invalid(response)
        assert "surrogate" in error["message"] and error["field"] is None


@pytest.mark.parametrize("override, field", [
    ({"command": "echo a\x00b"}, "command"),
    ({"command": ["sh", "-c", "echo\x00"]}, "command.2"),
    ({"env": {"GREETING": "hi\x00there"}}, "env.GREETING"),
    ({"name": "nul\x00name"}, "name"),
])
def test_nul_characters_in_a_submission_are_invalid(world, override, field):
    _invalid(submit(world.alice, **override), field)


def test_nul_characters_in_any_other_text_are_invalid(world):
    _invalid(world.admin.post("/api/v1/projects", json={"name": "p2", "description": "a\x00b"}), "description")
    _invalid(world.admin.put("/api/v1/projects/vision/secrets/TOKEN", json={"value": "s\x00"}), "value")
    # Text that merely spells the escape is text like any other.
    created = world.admin.post("/api/v1/projects", json={"name": "p3", "description": "a \\u0000 b"})
    assert created.status_code == 201 and created.json()["description"] == "a \\u0000 b"


def test_nul_characters_in_a_web_form_are_invalid(api):
    response = api.client.post("/sign-in", content=b"email=a%00b%40example.com&password=x&csrf_token=y",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 422 and "NUL" in response.text


def test_nul_characters_in_path_and_query_parameters_are_invalid(world):
    _invalid(world.alice.get("/api/v1/workloads/stats?project=vi%00sion"), "project")
    _invalid(world.alice.get("/api/v1/workloads?name=a%00&status=Running"), "name")
    _invalid(world.alice.get("/api/v1/projects/vi%00sion"), "name")
    _invalid(world.admin.put("/api/v1/projects/vision/secrets/A%00B", json={"value": "v"}), "secret")


def test_nul_characters_in_a_web_address_are_invalid(api):
    from tests.integration.test_web_access import _sign_in

    client, _ = _sign_in(api, "admin@example.com", "admin")
    response = client.get("/workloads?name=a%00b")
    assert response.status_code == 422 and "NUL" in response.text


def test_broken_json_is_invalid_in_the_one_shape(world):
    response = world.admin.post("/api/v1/projects", content=b'{"name": ', headers={"Content-Type": "application/json"})
    assert "not valid JSON" in _invalid(response)["message"]


# ----------------------------------------------------------------------------- the last administrator

def test_the_last_active_admin_can_neither_demote_nor_disable_themselves(world):
    me = world.admin.get("/api/v1/users/me").json()
    for change in ({"role": "member"}, {"disabled": True}):
        refused = world.admin.patch(f"/api/v1/users/{me['id']}", json=change)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "last_admin"
        assert "last active administrator" in refused.json()["error"]["message"]
    assert world.admin.get("/api/v1/users/me").json()["role"] == "admin"


def test_one_admin_may_go_while_another_stays_but_not_the_last(world):
    first = world.admin.get("/api/v1/users/me").json()
    second = world.api.user("root@example.com", "admin")
    second_id = second.get("/api/v1/users/me").json()["id"]
    # A disabled admin does not count as one who can administer.
    third = world.admin.post("/api/v1/users", json={"email": "off@example.com", "role": "admin"}).json()
    assert world.admin.patch(f"/api/v1/users/{third['id']}", json={"disabled": True}).status_code == 200
    assert second.patch(f"/api/v1/users/{first['id']}", json={"role": "member"}).status_code == 200
    assert second.patch(f"/api/v1/users/{second_id}", json={"disabled": True}).status_code == 409
    assert second.patch(f"/api/v1/users/{second_id}", json={"role": "member"}).status_code == 409
    # Other changes to the last admin are fine.
    assert second.patch(f"/api/v1/users/{second_id}", json={"display_name": "Root"}).status_code == 200
    # Re-enabling the disabled admin makes room again.
    assert second.patch(f"/api/v1/users/{third['id']}", json={"disabled": False}).status_code == 200
    assert second.patch(f"/api/v1/users/{second_id}", json={"role": "member"}).status_code == 200


# ----------------------------------------------------------------------------- hidden clusters

def test_a_member_cannot_tell_a_hidden_cluster_from_an_absent_one(world):
    hidden = world.admin.post("/api/v1/clusters", json={"name": "secret-gpus", "kind": "slurm"})
    assert hidden.status_code == 201
    # speech (not alice's project) holds a quota there; alice can see nothing of it.
    world.admin.put("/api/v1/projects/speech/quotas/secret-gpus", json={"guaranteed": {}})
    there = submit(world.alice, cluster="secret-gpus")
    absent = submit(world.alice, cluster="no-such-gpus")
    assert there.status_code == absent.status_code == 404
    assert there.json()["error"]["message"].replace("secret-gpus", "X") == \
        absent.json()["error"]["message"].replace("no-such-gpus", "X")
    assert world.alice.get("/api/v1/clusters/secret-gpus").status_code == 404
    # bob sees it (his project holds a quota there): for his other project it is "no quota".
    world.admin.post("/api/v1/projects/vision/members", json={"email": "bob@example.com"})
    assert submit(world.bob, cluster="secret-gpus").status_code == 422
    # An admin sees every cluster.
    assert submit(world.admin, cluster="secret-gpus").json()["error"]["code"] == "no_quota"


# ----------------------------------------------------------------------------- agent clocks

def test_a_report_from_the_future_does_not_wedge_the_component(world):
    agent = world.api.as_token(world.agent_token)
    wid = submit(world.alice).json()["id"]
    run_pass(world.api.engine)
    component = world.alice.get(f"/api/v1/workloads/{wid}").json()["components"][0]["id"]
    next_year = datetime.now(UTC) + timedelta(days=365)
    report = {"component_id": component, "status": "Running", "observed_at": next_year.isoformat()}
    assert agent.post("/api/v1/agent/component-statuses", json={"updates": [report]}).json()["applied"] == 1
    detail = world.alice.get(f"/api/v1/workloads/{wid}").json()
    assert detail["status"] == "Running"
    assert datetime.fromisoformat(detail["components"][0]["observed_at"]) < datetime.now(UTC) + timedelta(seconds=5)
    later = {"component_id": component, "status": "Completed", "observed_at": datetime.now(UTC).isoformat()}
    assert agent.post("/api/v1/agent/component-statuses", json={"updates": [later]}).json()["applied"] == 1
    assert world.alice.get(f"/api/v1/workloads/{wid}").json()["status"] == "Complete"


# ----------------------------------------------------------------------------- a dropped database connection

@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # SQLite has no server to drop them
def test_connections_the_database_dropped_are_replaced_not_a_500(world, db_url):
    assert world.alice.get("/api/v1/workloads").status_code == 200  # the pool holds live connections now
    killer = create_engine(db_url, isolation_level="AUTOCOMMIT")
    with killer.connect() as conn:
        pids = conn.execute(text("SELECT pid FROM pg_stat_activity "
                                 "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalars().all()
        dropped = sum(conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
                      for pid in pids)
        # pg_terminate_backend only signals: wait until those backends have closed their
        # connections (a connection dropped, not one being dropped, is what this is about).
        deadline = time.monotonic() + 30
        while conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"),
                           {"pids": pids}).scalar_one() and time.monotonic() < deadline:
            time.sleep(0.05)
    killer.dispose()
    assert dropped >= 1
    for _ in range(3):
        assert world.alice.get("/api/v1/workloads").status_code == 200
        assert submit(world.alice).status_code == 201


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_connection_back_soon_is_looked_at_and_one_idle_for_long_is_pinged(db_url):
    """What replaces pool_pre_ping's round trip on every checkout (corral.db.engine): a
    connection returned to the pool a moment ago is not pinged; one idle for longer is."""
    engine = make_engine(db_url, pool_size=1)
    pings = []
    real_ping = engine.dialect.do_ping
    engine.dialect.do_ping = lambda conn: pings.append(1) or real_ping(conn)  # counted, still pinging
    try:
        for _ in range(3):
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        assert pings == []
        time.sleep(PING_IDLE_AFTER_S + 0.2)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        assert pings == [1]
    finally:
        engine.dispose()


# ----------------------------------------------------------------------------- OpenAPI

def test_the_openapi_documents_the_error_shape_for_every_operation(api):
    schema = api.client.get("/openapi.json").json()
    assert schema["components"]["schemas"]["ErrorResponse"]["required"] == ["error"]
    ref = {"$ref": "#/components/schemas/ErrorResponse"}
    operations = [(path, method, op) for path, item in schema["paths"].items() if path.startswith("/api/")
                  for method, op in item.items()]
    assert len(operations) > 30
    for path, method, op in operations:
        codes = {code for code, response in op["responses"].items()
                 if response.get("content", {}).get("application/json", {}).get("schema") == ref}
        expected = {"401", "422", "500"} | ({"413"} if "requestBody" in op else set())
        assert expected <= codes, (method, path, sorted(op["responses"]))
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert "503" in schema["paths"]["/api/v1/workloads"]["post"]["responses"]
    assert "409" in schema["paths"]["/api/v1/users/{user_id}"]["patch"]["responses"]


# ----------------------------------------------------------------------------- body size

def test_the_largest_legitimate_body_passes_and_one_past_the_limit_does_not(world):
    # A batch script at its own limit (1,000,000 characters, escapes included) is accepted.
    script = ("#!/bin/bash\necho \"step\"\t\\\n" * 40_000)[:1_000_000]
    accepted = submit(world.alice, command=None, batch_script=script)
    assert accepted.status_code == 201, accepted.text[:300]
    limit = world.api.client.app.state.settings.max_body_bytes
    refused = world.admin.post("/api/v1/projects", content=b"{" + b" " * limit + b"}",
                               headers={"Content-Type": "application/json"})
    assert refused.status_code == 413 and refused.json()["error"]["code"] == "too_large"
