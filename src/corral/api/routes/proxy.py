"""The authenticated reverse proxy to a workload's service: ``/proxy/{workload id}/...``,
HTTP and WebSockets, at a stable URL, so that a workspace (JupyterLab) opens in a browser
tab and an inference endpoint answers at one address wherever it runs.

Who may pass: members of the workload's project and admins, by API token (``Authorization:
Bearer``) or the web UI's session cookie (what a browser tab sends). Nothing of Corral's
own credentials reaches the workload: the Authorization header and the session cookie
are removed. Upstream sees itself addressed as it listens (``Host`` is its own, and a
WebSocket's ``Origin`` is rewritten to match), so services that guard against DNS
rebinding and cross-site WebSockets, as Jupyter does, keep their defences on.
"""

from __future__ import annotations

import asyncio
import contextlib
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

import httpx
import websockets
from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask
from starlette.websockets import WebSocketDisconnect

from corral.api.deps import token_or_session
from corral.db.engine import read_tx
from corral.services import reach
from corral.services.errors import ClusterUnavailable, Unauthenticated
from corral.services.principal import Principal
from corral.services.web_sessions import SESSION_COOKIE

router = APIRouter(tags=["proxy"], include_in_schema=False)

_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
        "transfer-encoding", "upgrade", "host", "authorization", "cookie", "content-length"}
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def _principal(engine, authorization: str | None, cookies: dict[str, str]) -> Principal:  # type: ignore[no-untyped-def]
    principal = token_or_session(engine, authorization, cookies.get(SESSION_COOKIE))
    if principal is None:
        raise Unauthenticated("sign in, or send 'Authorization: Bearer <token>', to reach this workload")
    return principal


def _cookie_header(cookies: dict[str, str]) -> str | None:
    kept = SimpleCookie()
    for name, value in cookies.items():
        if name != SESSION_COOKIE:
            kept[name] = value
    header = "; ".join(f"{m.key}={m.coded_value}" for m in kept.values())
    return header or None


def _target(engine, principal: Principal, workload_id: int, path: str, query: str) -> str:  # type: ignore[no-untyped-def]
    with read_tx(engine) as conn:
        base = reach.service_endpoint(conn, principal, workload_id)
    url = base.rstrip("/") + "/" + path
    return f"{url}?{query}" if query else url


@router.api_route("/proxy/{workload_id}", methods=_METHODS)
@router.api_route("/proxy/{workload_id}/{path:path}", methods=_METHODS)
async def proxy_http(workload_id: int, request: Request, path: str = "") -> StreamingResponse:
    engine = request.app.state.engine
    principal = await asyncio.to_thread(_principal, engine, request.headers.get("authorization"),
                                        dict(request.cookies))
    url = await asyncio.to_thread(_target, engine, principal, workload_id, path, request.url.query)
    upstream_host = urlsplit(url).netloc
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP]
    headers.append(("host", upstream_host))
    cookie = _cookie_header(dict(request.cookies))
    if cookie:
        headers.append(("cookie", cookie))
    client = httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None), follow_redirects=False)
    try:
        upstream = await client.send(
            client.build_request(request.method, url, headers=headers, content=request.stream()), stream=True)
    except httpx.HTTPError as exc:
        await client.aclose()
        raise ClusterUnavailable(f"workload {workload_id}'s service does not answer ({type(exc).__name__})") from exc
    response_headers = [(k, v) for k, v in upstream.headers.multi_items()
                        if k.lower() not in _HOP or k.lower() == "content-length"]

    async def close() -> None:
        await upstream.aclose()
        await client.aclose()

    response = StreamingResponse(upstream.aiter_raw(), status_code=upstream.status_code, background=BackgroundTask(close))
    response.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response_headers]
    return response


@router.websocket("/proxy/{workload_id}/{path:path}")
async def proxy_websocket(websocket: WebSocket, workload_id: int, path: str = "") -> None:
    engine = websocket.app.state.engine
    try:
        principal = await asyncio.to_thread(_principal, engine, websocket.headers.get("authorization"),
                                            dict(websocket.cookies))
        url = await asyncio.to_thread(_target, engine, principal, workload_id, path, websocket.url.query)
    except Exception:  # noqa: BLE001 - unauthenticated, not visible or no endpoint: refuse the upgrade
        await websocket.close(code=1008)
        return
    parts = urlsplit(url)
    ws_url = url.replace(f"{parts.scheme}://", "wss://" if parts.scheme == "https" else "ws://", 1)
    headers = {}
    cookie = _cookie_header(dict(websocket.cookies))
    if cookie:
        headers["Cookie"] = cookie
    subprotocols = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    try:
        upstream = await websockets.connect(
            ws_url, additional_headers=headers, origin=f"{parts.scheme}://{parts.netloc}",  # type: ignore[arg-type]
            subprotocols=subprotocols or None, max_size=None, open_timeout=10)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - the service refused or is gone
        await websocket.close(code=1011)
        return
    await websocket.accept(subprotocol=upstream.subprotocol)

    async def client_to_upstream() -> None:
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("bytes") is not None:
                    await upstream.send(message["bytes"])
                elif message.get("text") is not None:
                    await upstream.send(message["text"])
        except WebSocketDisconnect:
            pass
        finally:
            await upstream.close()

    async def upstream_to_client() -> None:
        try:
            async for message in upstream:
                if isinstance(message, bytes):
                    await websocket.send_bytes(message)
                else:
                    await websocket.send_text(message)
        except websockets.ConnectionClosed:
            pass
        finally:
            with contextlib.suppress(Exception):
                await websocket.close()

    await asyncio.gather(client_to_upstream(), upstream_to_client())
