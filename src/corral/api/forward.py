"""Passing one request, or one WebSocket, to a workload's service and its answer back.

Bodies stream both ways (an upload or a token stream is never held whole in memory);
which headers pass, and how they change, is ``proxy_headers``' business: this module
only moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import httpx
import websockets
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from corral.api.proxy_headers import Headers

_CLIENT_TIMEOUT = httpx.Timeout(30.0, read=None)  # a service may stream its answer for as long as it likes


async def forward_http(request: Request, url: str, headers: Headers,
                       response_headers: Callable[[Headers], Headers]) -> Response:
    """The service's answer to this request (``url``: where it goes; ``headers``: as sent)."""
    has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
    client = httpx.AsyncClient(timeout=_CLIENT_TIMEOUT, follow_redirects=False)
    try:
        upstream = await client.send(client.build_request(
            request.method, url, headers=headers, content=request.stream() if has_body else None), stream=True)
    except httpx.HTTPError as exc:
        await client.aclose()
        return Response(f"the workload's service does not answer ({type(exc).__name__}); is it running?\n",
                        status_code=502, media_type="text/plain", headers={"Cache-Control": "no-store"})

    async def close() -> None:
        await upstream.aclose()
        await client.aclose()

    response = StreamingResponse(upstream.aiter_raw(), status_code=upstream.status_code,
                                 background=BackgroundTask(close))
    response.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                            for k, v in response_headers(list(upstream.headers.multi_items()))]
    return response


async def bridge_websocket(websocket: WebSocket, ws_url: str, headers: dict[str, str], origin: str) -> None:
    """Connect to the service's WebSocket (as from ``origin``), accept the browser's, and
    pass messages both ways until either side closes."""
    subprotocols = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    try:
        upstream = await websockets.connect(
            ws_url, additional_headers=headers, origin=origin,  # type: ignore[arg-type]
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
        except (WebSocketDisconnect, websockets.ConnectionClosed):
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


def websocket_url(http_url: str) -> str:
    return "wss://" + http_url[len("https://"):] if http_url.startswith("https://") else \
        "ws://" + http_url[len("http://"):]
