"""The agent's own small HTTP API: component output for the control plane, which streams
it on to users (`GET /api/v1/workloads/{id}/logs`). Only the control plane may call it: it
presents the key this agent sent in its heartbeat.

A follower holds no thread: it polls the backend's non-blocking ``read_output`` (a short
file read, run in a small shared thread pool) and sleeps asynchronously in between. It
ends when the component has finished and everything was sent, when the control plane
drops the connection, or when the agent stops.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import AsyncIterator

import anyio
import uvicorn
from fastapi import FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse

from corral.backends.base import Backend, UnknownComponent
from corral.follow import FollowResponse, until_set
from corral.quiet_uvicorn import QuietServer

POLL_S = 0.25  # how soon new output reaches a follower
READ_THREADS = 4  # output reads at once, whatever the number of followers
READ_BYTES = 1 << 20  # at most this much per read


def logs_app(backend: Backend, key: str) -> FastAPI:
    app = FastAPI(title="corral agent", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.stopping = threading.Event()  # set by LogsServer.stop: followers end
    app.state.followers = 0  # open follow streams, for GET /v1/stats
    limiter: list[anyio.CapacityLimiter] = []  # made in the event loop, on first use

    def check(authorization: str | None) -> None:
        presented = (authorization or "").removeprefix("Bearer ")
        if not hmac.compare_digest(presented.encode(), key.encode()):
            raise HTTPException(status_code=401, detail="not the control plane")

    async def run(fn, *args):  # type: ignore[no-untyped-def]
        if not limiter:
            limiter.append(anyio.CapacityLimiter(READ_THREADS))
        return await anyio.to_thread.run_sync(fn, *args, limiter=limiter[0])

    @app.get("/v1/logs/{component_id}", response_model=None)
    async def logs(component_id: int, tail: int = Query(100, ge=0, le=100_000), follow: bool = False,
                   authorization: str | None = Header(None)) -> PlainTextResponse | FollowResponse:
        check(authorization)
        try:
            if not follow:
                return PlainTextResponse(await run(backend.logs, component_id, tail))
            first = await run(lambda: backend.read_output(component_id, None, tail))
        except UnknownComponent as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        app.state.followers += 1

        async def closed() -> None:
            app.state.followers -= 1

        return FollowResponse(_follow(run, backend, component_id, first), media_type="text/plain",
                              stop_when=[until_set(app.state.stopping)], on_close=closed)

    @app.get("/v1/stats")
    async def stats(request: Request, authorization: str | None = Header(None)) -> dict:
        """What this API holds open (tests and operators check that followers end)."""
        check(authorization)
        return {"log_followers": request.app.state.followers}

    return app


async def _follow(run, backend: Backend, component_id: int, first) -> AsyncIterator[bytes]:  # type: ignore[no-untyped-def]
    """The output as it is written, bytes as they come (a progress bar without newlines too)."""
    yield first.data
    offset, over = first.offset, first.over
    while not over:
        try:
            read = await run(backend.read_output, component_id, offset, 0, READ_BYTES)
        except UnknownComponent:
            return  # forgotten (finished, its status stored): nothing more will come
        offset, over = read.offset, read.over
        yield read.data
        if len(read.data) < READ_BYTES:  # caught up: wait for more; after a full read, read on
            await anyio.sleep(POLL_S)


class LogsServer:
    """uvicorn in a daemon thread; ``port`` 0 picks a free one."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        # Followers end on stop (app.state.stopping); the timeout bounds anything else.
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                timeout_graceful_shutdown=3)
        self._app = app
        self._server = QuietServer(config)
        self._thread = threading.Thread(target=self._server.run, name="agent-logs-api", daemon=True)

    def start(self, timeout: float = 10.0) -> int:
        self._thread.start()
        for _ in range(int(timeout / 0.02)):
            if self._server.started:
                return self._server.servers[0].sockets[0].getsockname()[1]
            threading.Event().wait(0.02)
        raise RuntimeError("the agent's log API did not start")

    def stop(self) -> None:
        self._app.state.stopping.set()
        self._server.request_exit()
        self._thread.join(timeout=5)
