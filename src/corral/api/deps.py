"""What every request needs: the caller, a database connection, the settings."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Engine

from corral.services import clusters as cluster_service
from corral.services.errors import Unauthenticated
from corral.services.principal import Principal
from corral.services.users import authenticate
from corral.services.web_sessions import SESSION_COOKIE, session_for
from corral.settings import Settings


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("missing credentials: send 'Authorization: Bearer <token>'")
    return token.strip()


# Dependencies that do no I/O are async: a sync one costs a hop to the thread pool.
async def engine_of(request: Request) -> Engine:
    return request.app.state.engine


async def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def current_principal(request: Request) -> Principal:
    principal = authenticate(request.app.state.engine, _bearer(request))
    if principal is None:
        raise Unauthenticated("invalid, expired or revoked token")
    return principal


def current_cluster(request: Request) -> Any:
    """The cluster whose agent is calling (agent tokens, not user tokens)."""
    token = _bearer(request)
    with request.app.state.engine.connect() as conn:
        row = cluster_service.cluster_for_agent(conn, token)
    if row is None:
        raise Unauthenticated("invalid agent token")
    return row


def current_reader(request: Request) -> Principal:
    """For reads a browser page makes itself (a workload's output on its details page): an
    API token, or the web UI's session cookie. Only for GETs: forms carry CSRF tokens."""
    if request.headers.get("authorization"):
        return current_principal(request)
    token = request.cookies.get(SESSION_COOKIE)
    session = session_for(request.app.state.engine, token) if token else None
    if session is None:
        raise Unauthenticated("missing credentials: send 'Authorization: Bearer <token>' or sign in")
    return session.principal


CurrentUser = Annotated[Principal, Depends(current_principal)]
CurrentReader = Annotated[Principal, Depends(current_reader)]
# Routes open their transactions themselves (read_tx / write_tx), so that a write has
# committed before its response is sent.
Db = Annotated[Engine, Depends(engine_of)]
AppSettings = Annotated[Settings, Depends(settings_of)]
AgentCluster = Annotated[Any, Depends(current_cluster)]
