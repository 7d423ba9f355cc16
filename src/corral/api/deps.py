"""What every request needs: the caller, a database connection, the settings."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from corral.api.seen_tokens import SeenTokens
from corral.services import clusters as cluster_service
from corral.services.errors import Unauthenticated
from corral.services.principal import Principal
from corral.services.users import authenticate, hash_token
from corral.services.web_sessions import session_cookie_name, session_for
from corral.settings import Settings


# Declared, so that the OpenAPI document says how to authenticate and /docs has its
# "Authorize" button (its "Try it out" then sends the token); the errors stay Corral's own.
_BEARER = HTTPBearer(auto_error=False, scheme_name="token",
                     description="An API token (`corral tokens create`, or the web UI's API tokens page); "
                                 "the agent endpoints take the cluster's agent token.")
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


def _bearer(credentials: HTTPAuthorizationCredentials | None) -> str:
    token = credentials.credentials.strip() if credentials is not None else ""
    if not token:
        raise Unauthenticated("missing credentials: send 'Authorization: Bearer <token>'")
    return token


# Dependencies that do no I/O are async: a sync one costs a hop to the thread pool.
async def engine_of(request: Request) -> Engine:
    return request.app.state.engine


async def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def current_principal(request: Request, credentials: Bearer) -> Principal:
    principal = authenticate(request.app.state.engine, _bearer(credentials))
    if principal is None:
        raise Unauthenticated("invalid, expired or revoked token")
    return principal


def agent_cluster(engine: Engine, token: str) -> Any:
    """The cluster whose agent holds ``token`` (agent tokens, not user tokens)."""
    with engine.connect() as conn:
        row = cluster_service.cluster_for_agent(conn, token)
    if row is None:
        raise Unauthenticated("invalid agent token")
    return row


def current_cluster(request: Request, credentials: Bearer) -> Any:
    """The cluster whose agent is calling."""
    return agent_cluster(request.app.state.engine, _bearer(credentials))


async def agent_token(request: Request, credentials: Bearer) -> str:
    """An agent's token, for a sync route that looks its cluster up with ``agent_cluster``
    in its own thread (that lookup is the one that counts). Checked here too, so that a bad
    token gets 401 before a bad body gets 422, as on every route; a token seen valid in the
    last seconds is not looked up again (no hop to the thread pool on the hot path)."""
    token = _bearer(credentials)
    seen = SeenTokens.of(request.app.state, "seen_agent_tokens")
    # agent_cluster raises 401 for a token that is not an agent's
    await seen.valid(hash_token(token), lambda: agent_cluster(request.app.state.engine, token))
    return token


def token_or_session(engine: Engine, authorization: str | None, session_token: str | None) -> Principal | None:
    """Who sends an API token (``Authorization: Bearer``), or else the web UI's session
    cookie; None if neither is valid. A wrong token never falls back to the cookie."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return authenticate(engine, token.strip())
    session = session_for(engine, session_token) if session_token else None
    return session.principal if session is not None else None


def current_reader(request: Request, _documented: Bearer) -> Principal:
    """For reads a browser page makes itself (a workload's output on its details page): an
    API token, or the web UI's session cookie. Only for GETs: forms carry CSRF tokens."""
    principal = token_or_session(request.app.state.engine, request.headers.get("authorization"),
                                 request.cookies.get(session_cookie_name(request.url.scheme == "https")))
    if principal is None:
        raise Unauthenticated("missing or invalid credentials: send 'Authorization: Bearer <token>' or sign in")
    return principal


CurrentUser = Annotated[Principal, Depends(current_principal)]
CurrentReader = Annotated[Principal, Depends(current_reader)]
# Routes open their transactions themselves (read_tx / write_tx), so that a write has
# committed before its response is sent.
Db = Annotated[Engine, Depends(engine_of)]
AppSettings = Annotated[Settings, Depends(settings_of)]
AgentCluster = Annotated[Any, Depends(current_cluster)]
AgentToken = Annotated[str, Depends(agent_token)]
