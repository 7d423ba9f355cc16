"""A workload's own origin, ``w<id>.<apps domain>``: its service, behind Corral's checks.

``host_dispatch`` sends here every request whose ``Host`` names a workload. Nothing of
Corral's UI or API answers here; everything but ``/__corral/auth`` goes to the service.

Who may pass, on every request (HTTP and WebSocket):

- a browser holding this origin's credential cookie, which ``/__corral/auth`` sets in
  exchange for a ticket from Corral's ``/workloads/<id>/open`` (``services.app_access``);
- an API client with ``Authorization: Bearer <Corral token>`` (curl against an
  inference endpoint), removed before forwarding.

Either way the user must still be enabled, still signed in with what the credential
names, and still allowed to see the workload: checked in the database each time. A
browser without a credential that navigates here is sent to Corral to get one (and
back to the same path). State-changing requests and WebSocket upgrades from another
origin are refused (a sibling workload's page must not drive this one with the
viewer's cookie); a WebSocket without ``Origin`` is a non-browser client and passes
with its token.
"""

from __future__ import annotations

import asyncio
import html
import time
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from corral.api import proxy_headers as ph
from corral.api.forward import bridge_websocket, forward_http, websocket_url
from corral.db.engine import read_tx
from corral.services import reach
from corral.services.app_access import CREDENTIAL_TTL_S, RENEW_AFTER_S, Grant, signer_for, viewer
from corral.services.app_origins import RESERVED_PREFIX, AppOrigins, safe_path, upstream_url
from corral.services.errors import ServiceError
from corral.services.service_tokens import proxy_authorization
from corral.services.users import authenticate

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class _Refused(Exception):
    def __init__(self, status: int, message: str, *, sign_in: bool = False) -> None:
        super().__init__(message)
        self.status, self.message, self.sign_in = status, message, sign_in


@dataclass(frozen=True)
class _Pass:
    endpoint: str  # where the service listens (its reported endpoint URL)
    renew: Grant | None  # a browser credential past half its life: send a fresh one


class WorkloadOrigin:
    """The ASGI app of workload origins (``scope["corral.workload_id"]`` says which)."""

    def __init__(self, state: State) -> None:
        self.state = state  # the Corral app's: engine, settings, app_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        workload_id = scope["corral.workload_id"]
        origins: AppOrigins = self.state.app_origins
        if scope["type"] == "websocket":
            await self._websocket(WebSocket(scope, receive, send), workload_id, origins)
            return
        request = Request(scope, receive)
        own = ph.request_origin(origins.scheme, request.headers.get("host"))
        if request.url.path == f"{RESERVED_PREFIX}auth":
            response = await asyncio.to_thread(self._sign_in, request, workload_id, origins)
        elif request.url.path.startswith(RESERVED_PREFIX):
            response = _error(request, 404, "nothing here")
        else:
            response = await self._proxy(request, workload_id, origins, own)
        await response(scope, receive, send)

    # ------------------------------------------------------------------ signing in

    def _sign_in(self, request: Request, workload_id: int, origins: AppOrigins) -> Response:
        """Trade a ticket from Corral's origin for this origin's credential cookie."""
        if request.method not in ("GET", "HEAD"):
            return _error(request, 405, "method not allowed")
        signer = signer_for(self.state.settings)
        grant = signer.check_ticket(request.query_params.get("ticket"), workload_id)
        if grant is None:
            return _error(request, 403, "this sign-in link has expired or is not for this workload; open the "
                          "workload again from Corral", link=origins.corral_url + origins.open_path(workload_id))
        response = RedirectResponse(safe_path(request.query_params.get("next")), status_code=303)
        _set_credential(response, origins, signer.credential(grant))
        # The ticket was in this URL: keep it out of caches and of the next page's Referer.
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    # ------------------------------------------------------------------ who passes

    def _authorize(self, headers: Any, workload_id: int) -> _Pass:
        """The service's endpoint, if this request's user may reach it now (else _Refused)."""
        engine = self.state.engine
        scheme, _, token = (headers.get("authorization") or "").partition(" ")
        grant = expires = None
        if scheme.lower() == "bearer" and token.strip():
            principal = authenticate(engine, token.strip())  # a wrong token never falls back to the cookie
            if principal is None:
                raise _Refused(401, "invalid, expired or revoked token")
        else:
            signer = signer_for(self.state.settings)
            for value in ph.cookie_values(headers.getlist("cookie"), self.state.app_origins.cookie_name()):
                found = signer.check_credential(value, workload_id)
                if found is not None:
                    grant, expires = found
                    break
            if grant is None:
                raise _Refused(401, "sign in to Corral and open this workload from there, or send "
                               "'Authorization: Bearer <token>'", sign_in=True)
        with read_tx(engine) as conn:
            if grant is not None:
                principal = viewer(conn, grant)
                if principal is None:
                    raise _Refused(401, "your Corral sign-in has ended: sign in again", sign_in=True)
            try:
                endpoint = reach.service_endpoint(conn, principal, workload_id)
            except ServiceError as exc:  # not theirs to see (404), or nothing serves (409)
                raise _Refused(exc.status_code, exc.message) from None
        renew = grant if expires is not None and expires - time.time() < CREDENTIAL_TTL_S - RENEW_AFTER_S else None
        return _Pass(endpoint, renew)

    async def _proxy(self, request: Request, workload_id: int, origins: AppOrigins, own: str) -> Response:
        if request.method not in _SAFE_METHODS and "origin" in request.headers \
                and not ph.same_origin(request.headers["origin"], own):
            return _error(request, 403, "requests from another origin may not change anything here")
        try:
            allowed = await asyncio.to_thread(self._authorize, request.headers, workload_id)
        except _Refused as refused:
            if refused.sign_in and _is_navigation(request):
                path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(origins.corral_url + origins.open_path(workload_id, path), status_code=303,
                                        headers={"Cache-Control": "no-store"})
            return _error(request, refused.status, refused.message)
        upstream = ph.origin_of(allowed.endpoint)
        url = upstream_url(allowed.endpoint, request.url.path, request.url.query)
        headers = ph.upstream_request_headers(list(request.headers.items()), own_origin=own, upstream=upstream)
        headers.append(("authorization", proxy_authorization(self.state.settings, workload_id)))
        response = await forward_http(request, url, headers, lambda found: ph.browser_response_headers(
            found, own_origin=own, upstream=upstream))
        if allowed.renew is not None:
            _set_credential(response, origins, signer_for(self.state.settings).credential(allowed.renew))
        return response

    async def _websocket(self, websocket: WebSocket, workload_id: int, origins: AppOrigins) -> None:
        own = ph.request_origin(origins.scheme, websocket.headers.get("host"))
        origin = websocket.headers.get("origin")
        if origin is not None and not ph.same_origin(origin, own):
            await websocket.close(code=1008)  # before accepting: the browser sees the upgrade refused (403)
            return
        try:
            allowed = await asyncio.to_thread(self._authorize, websocket.headers, workload_id)
        except _Refused:
            await websocket.close(code=1008)
            return
        upstream = ph.origin_of(allowed.endpoint)
        headers = {"Authorization": proxy_authorization(self.state.settings, workload_id)}
        cookie = ph.forwarded_cookie(websocket.headers.getlist("cookie"))
        if cookie:
            headers["Cookie"] = cookie
        url = websocket_url(upstream_url(allowed.endpoint, websocket.url.path, websocket.url.query))
        await bridge_websocket(websocket, url, headers, origin=upstream)


def _set_credential(response: Response, origins: AppOrigins, value: str) -> None:
    response.set_cookie(origins.cookie_name(), value, max_age=CREDENTIAL_TTL_S, path="/", httponly=True,
                        samesite="lax", secure=origins.secure)


def _is_navigation(request: Request) -> bool:
    if request.method not in ("GET", "HEAD"):
        return False
    mode = request.headers.get("sec-fetch-mode")
    return mode == "navigate" if mode else "text/html" in request.headers.get("accept", "")


def _error(request: Request, status: int, message: str, *, link: str | None = None) -> Response:
    headers = {"Cache-Control": "no-store"}
    if "text/html" in request.headers.get("accept", ""):
        more = f' <a href="{html.escape(link)}">Open it from Corral</a>.' if link else ""
        return HTMLResponse(f"<!doctype html><title>Corral</title><p>{html.escape(message[:1].upper() + message[1:])}."
                            f"{more}</p>\n", status_code=status, headers=headers)
    return JSONResponse({"error": {"code": _CODES.get(status, "error"), "message": message}}, status_code=status,
                        headers=headers)


_CODES = {401: "unauthenticated", 403: "forbidden", 404: "not_found", 405: "method_not_allowed", 409: "no_endpoint"}
