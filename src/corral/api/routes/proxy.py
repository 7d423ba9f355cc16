"""Path-based serving, ``/proxy/<workload id>/...`` on Corral's own origin: UNSAFE, off by default.

Workloads are served on origins of their own (``api/workload_origin.py``). A page served
here instead would share Corral's origin, so its scripts could call Corral as whoever
opened it. For an operator who cannot provide a wildcard name, ``CORRAL_PATH_PROXY_UNSAFE=1``
turns this back on, and then every answer carries a sandboxing CSP (no
``allow-same-origin``: the page runs in an opaque origin, without Corral's cookies or
storage, and its requests to Corral carry no cookie), upstream ``Set-Cookie`` is dropped,
and WebSockets are for non-browser clients only (no ``Origin``). Pages that need their
own cookies or same-origin WebSockets (JupyterLab, code-server) do not work here.

Off, every path answers 404 with where the workload is served now.
``/proxy/<id>/<rest>`` goes to ``/<rest>`` on the service's own origin. Who may pass:
members of the workload's project and admins, by API token or the web UI's session
cookie; neither is forwarded.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, WebSocket
from sqlalchemy import Engine
from starlette.responses import Response

from corral.api import proxy_headers as ph
from corral.api.deps import token_or_session
from corral.api.forward import bridge_websocket, forward_http, websocket_url
from corral.db.engine import read_tx
from corral.services import reach
from corral.services.app_origins import upstream_url
from corral.services.errors import NotFound, Unauthenticated
from corral.services.principal import Principal
from corral.services.service_tokens import proxy_authorization
from corral.services.web_sessions import session_cookie_name

router = APIRouter(tags=["proxy"], include_in_schema=False)

SANDBOX_CSP = "sandbox allow-scripts allow-forms allow-popups allow-downloads"
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def _endpoint(engine: Engine, authorization: str | None, session: str | None, workload_id: int) -> str:
    principal: Principal | None = token_or_session(engine, authorization, session)
    if principal is None:
        raise Unauthenticated("sign in, or send 'Authorization: Bearer <token>', to reach this workload")
    with read_tx(engine) as conn:
        return reach.service_endpoint(conn, principal, workload_id)


def _refuse_unless_enabled(request_or_ws: Request | WebSocket, workload_id: int) -> None:
    if not request_or_ws.app.state.settings.path_proxy_unsafe:
        raise NotFound(f"workloads are served on origins of their own: open this one at "
                       f"/workloads/{workload_id}/open (path-based serving is off)")


@router.api_route("/proxy/{workload_id}", methods=_METHODS)
@router.api_route("/proxy/{workload_id}/{path:path}", methods=_METHODS)
async def proxy_http(workload_id: int, request: Request, path: str = "") -> Response:
    _refuse_unless_enabled(request, workload_id)
    endpoint = await asyncio.to_thread(_endpoint, request.app.state.engine, request.headers.get("authorization"),
                                       request.cookies.get(session_cookie_name(request.url.scheme == "https")),
                                       workload_id)
    upstream = ph.origin_of(endpoint)
    own = ph.request_origin(request.url.scheme, request.headers.get("host"))
    headers = ph.upstream_request_headers(list(request.headers.items()), own_origin=own, upstream=upstream)
    headers.append(("authorization", proxy_authorization(request.app.state.settings, workload_id)))
    response = await forward_http(request, upstream_url(endpoint, "/" + path, request.url.query), headers,
                                  lambda found: ph.browser_response_headers(
                                      found, own_origin=f"{own}/proxy/{workload_id}", upstream=upstream,
                                      keep_cookies=False))
    response.headers["Content-Security-Policy"] = SANDBOX_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@router.websocket("/proxy/{workload_id}/{path:path}")
async def proxy_websocket(websocket: WebSocket, workload_id: int, path: str = "") -> None:
    if not websocket.app.state.settings.path_proxy_unsafe or "origin" in websocket.headers:
        await websocket.close(code=1008)  # off; or a browser page, which must not reach it from Corral's origin
        return
    try:
        endpoint = await asyncio.to_thread(_endpoint, websocket.app.state.engine,
                                           websocket.headers.get("authorization"), None, workload_id)
    except Exception:  # noqa: BLE001 - unauthenticated, not visible or no endpoint: refuse the upgrade
        await websocket.close(code=1008)
        return
    upstream = ph.origin_of(endpoint)
    url = websocket_url(upstream_url(endpoint, "/" + path, websocket.url.query))
    cookie = ph.forwarded_cookie(websocket.headers.getlist("cookie"))
    headers = {"Authorization": proxy_authorization(websocket.app.state.settings, workload_id)}
    if cookie:
        headers["Cookie"] = cookie
    await bridge_websocket(websocket, url, headers, origin=upstream)
