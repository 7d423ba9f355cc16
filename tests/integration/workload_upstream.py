"""A real service for proxy tests: a small ASGI app under uvicorn in a thread, on a port
of its own, that shows what reached it (HTTP and WebSocket) and plants cookies on request."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from corral.services.admission import run_pass

# What an evil service sends to plant cookies: on Corral's origin (Domain=), under Corral's names.
PLANTED = ("corral_session=planted; Domain=localhost; Path=/", "__Host-corral_session=planted; Path=/; Secure",
           "corral_app=planted; Path=/", "theirs=1; Domain=localhost; Path=/; HttpOnly")


async def _echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"method": request.method, "path": request.url.path, "query": request.url.query,
                         "headers": [[k, v] for k, v in request.headers.items()], "body": body.decode()})


async def _set_cookies(request: Request) -> Response:
    response = Response("planted\n")
    for value in PLANTED:
        response.raw_headers.append((b"set-cookie", value.encode()))
    return response


async def _redirect(request: Request) -> Response:
    return RedirectResponse(f"http://{request.headers['host']}/elsewhere", status_code=302)


async def _ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"headers": dict(websocket.headers)})
    async for text in websocket.iter_text():
        await websocket.send_text(f"echo: {text}")


APP = Starlette(routes=[Route("/set-cookies", _set_cookies), Route("/redirect", _redirect),
                        WebSocketRoute("/ws", _ws),
                        Route("/{path:path}", _echo, methods=["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"])])


@contextmanager
def upstream() -> Iterator[str]:
    """The service's base URL while it runs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(APP, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the test service did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def running_service(world: Any, endpoint: str, client: Any = None, name: str = "svc") -> int:
    """A service workload of project vision, admitted, that its agent reports Running at ``endpoint``."""
    client = client or world.alice
    created = client.post("/api/v1/workloads", json={
        "type": "custom", "name": name, "project": "vision", "command": "serve", "service": True,
        "resources": {"cpu": 1, "memory": "1Gi"}})
    assert created.status_code == 201, created.text
    wid = created.json()["id"]
    run_pass(world.api.engine)
    detail = client.get(f"/api/v1/workloads/{wid}").json()
    server = next(c for c in detail["components"] if c["kind"] == "server")
    observed = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    reported = world.api.as_token(world.agent_token).post("/api/v1/agent/component-statuses", json={"updates": [
        {"component_id": server["id"], "status": "Running", "observed_at": observed, "endpoint_url": endpoint}]})
    assert reported.status_code == 200 and reported.json()["applied"] == 1, reported.text
    assert client.get(f"/api/v1/workloads/{wid}").json()["status"] == "Running"
    return wid
