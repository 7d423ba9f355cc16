"""Open a workload's service in the browser: ``GET /workloads/<id>/open``.

The service lives on an origin of its own (``services.app_origins``). This page, on
Corral's origin, checks that the viewer may see the workload and that it serves
something, then sends the browser there with a one-minute ticket for that workload and
user (``services.app_access``), which the workload's origin trades for a cookie of its
own. Without a session it asks to sign in first, then comes back here.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from corral.db.engine import read_tx
from corral.services import reach
from corral.services.app_access import Grant, signer_for
from corral.services.app_origins import RESERVED_PREFIX, safe_path
from corral.services.errors import Unauthenticated
from corral.services.principal import Principal
from corral.services.users import authenticate, hash_token
from corral.web.http import WebId, WebRoute, current_session

router = APIRouter(route_class=WebRoute, include_in_schema=False)


def _viewer(request: Request) -> tuple[Principal, str]:
    """Who opens it, and what they signed in with: an API token, else the web session."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        principal = authenticate(request.app.state.engine, token.strip())
        if principal is None:
            raise Unauthenticated("invalid, expired or revoked token")
        return principal, f"t:{hash_token(token.strip())}"
    session = current_session(request)  # none: sign in, then back here
    return session.principal, f"s:{session.id}"


@router.get("/workloads/{workload_id:int}/open")
def open_workload(workload_id: WebId, request: Request, next: str | None = None) -> Response:
    principal, via = _viewer(request)
    with read_tx(request.app.state.engine) as conn:
        reach.service_endpoint(conn, principal, workload_id)  # 404 if not theirs to see, 409 if nothing serves
    origins = request.app.state.app_origins
    ticket = signer_for(request.app.state.settings).ticket(Grant(principal.user_id, workload_id, via))
    query = urlencode({"ticket": ticket, "next": safe_path(next)})
    response = RedirectResponse(f"{origins.origin(workload_id)}{RESERVED_PREFIX}auth?{query}", status_code=303)
    # The ticket is in the URL: keep it out of caches and of the next page's Referer.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
