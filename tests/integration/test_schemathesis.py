"""Schemathesis over the served OpenAPI, against a real server, as an administrator.

It generates requests from /openapi.json (boundary values, wrong types, huge numbers,
odd strings) and fails on any 5xx and on any answer the OpenAPI does not describe:
an undocumented status, a body that does not match its schema, a wrong content type.
The budget is bounded (CORRAL_SCHEMATHESIS_MAX_TIME seconds per database, a fixed
seed unless CORRAL_SCHEMATHESIS_SEED says otherwise) so that it fits in CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import update

from corral.db.engine import make_engine, write_tx
from corral.db.tables import api_tokens, users
from corral.domain.resources import Resources
from corral.services import clusters as cluster_service, projects as project_service, quotas as quota_service
from corral.services import users as user_service
from corral.services.principal import SYSTEM, Principal
from tests.integration.live_server import live_server

MAX_TIME = os.environ.get("CORRAL_SCHEMATHESIS_MAX_TIME", "12")
SEED = os.environ.get("CORRAL_SCHEMATHESIS_SEED", "20240611")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
# Ids no generator is likely to hit: the run must not revoke its own token or disable its
# own user (it may do anything else an administrator may do).
ADMIN_ID = TOKEN_ID = 7_654_321


def _seed(db_url: str) -> tuple[str, str]:
    """An administrator plus a cluster, a project and a quota to aim at: (the admin's
    token, the cluster agent's token)."""
    engine = make_engine(db_url, pool_size=1)
    try:
        with write_tx(engine) as conn:
            admin = user_service.create_user(conn, email="fuzz@example.com", display_name=None, role="admin",
                                             actor=SYSTEM)
            conn.execute(update(users).where(users.c.id == admin["id"]).values(id=ADMIN_ID))
            secret, token = user_service.create_token(conn, user_id=ADMIN_ID, name="fuzz", expires_at=None,
                                                      actor=SYSTEM)
            conn.execute(update(api_tokens).where(api_tokens.c.id == token["id"]).values(id=TOKEN_ID))
            principal = Principal(ADMIN_ID, "fuzz@example.com", "admin")
            agent_token, _ = cluster_service.create_cluster(conn, principal, name="gpu-a", kind="kubernetes", description="",
                                           capacity=Resources(16, 128_000, 2**40, 2**40), unhealthy_after_s=90)
            project_service.create_project(conn, principal, name="vision", description="")
            quota_service.set_quota(conn, principal, "vision", "gpu-a", guaranteed=Resources(8, 64_000, 2**39),
                                    limit=None)
        return secret, agent_token
    finally:
        engine.dispose()


def _schemathesis(server_url: str, token: str, cwd: Path, *selection: str, max_time: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{server_url}/openapi.json", *selection,
         "--header", f"Authorization: Bearer {token}", "--checks", CHECKS,
         "--phases", "examples,coverage,fuzzing", "--max-time", max_time, "--max-examples", "60",
         "--seed", SEED, "--workers", "1", "--request-timeout", "10", "--no-color",
         "--suppress-health-check", "all"],
        capture_output=True, text=True, timeout=int(max_time) + 60, cwd=cwd)
    assert run.returncode == 0, f"schemathesis found problems:\n{run.stdout[-20_000:]}{run.stderr[-5_000:]}"


# What would end the run's own access (revoking its token, demoting or disabling its user)
# is fuzzed last, on its own: before, it would turn everything after it into 401s.
SELF_DESTRUCTIVE = r"^/api/v1/(tokens/\{token_id\}|users/\{user_id\})$"
AGENT = r"^/api/v1/agent/"


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(db_url: str, tmp_path: Path) -> None:
    token, agent_token = _seed(db_url)
    with live_server(db_url, tmp_path) as server:
        try:
            _schemathesis(server.url, token, tmp_path, "--exclude-path-regex", f"{SELF_DESTRUCTIVE}|{AGENT}",
                          max_time=MAX_TIME)
            _schemathesis(server.url, agent_token, tmp_path, "--include-path-regex", AGENT, max_time="5")
            _schemathesis(server.url, token, tmp_path, "--include-path-regex", SELF_DESTRUCTIVE, max_time="3")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- server log ---\n{server.output()[-10_000:]}") from None
        assert "Traceback" not in server.output(), server.output()[-10_000:]
