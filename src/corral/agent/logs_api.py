"""The agent's own small HTTP API: component output for the control plane, which streams
it on to users (`GET /api/v1/workloads/{id}/logs`). Only the control plane may call it: it
presents the key this agent sent in its heartbeat."""

from __future__ import annotations

import hmac
import threading
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI, Header, HTTPException, Query
from fastapi.responses import PlainTextResponse, StreamingResponse

from corral.backends.base import Backend, UnknownComponent


def logs_app(backend: Backend, key: str) -> FastAPI:
    app = FastAPI(title="corral agent", docs_url=None, redoc_url=None, openapi_url=None)

    def check(authorization: str | None) -> None:
        presented = (authorization or "").removeprefix("Bearer ")
        if not hmac.compare_digest(presented.encode(), key.encode()):
            raise HTTPException(status_code=401, detail="not the control plane")

    @app.get("/v1/logs/{component_id}", response_model=None)
    def logs(component_id: int, tail: int = Query(100, ge=0, le=100_000), follow: bool = False,
             authorization: str | None = Header(None)) -> PlainTextResponse | StreamingResponse:
        check(authorization)
        try:
            if not follow:
                return PlainTextResponse(backend.logs(component_id, tail_lines=tail))
            stream = backend.follow_logs(component_id, tail_lines=tail)
        except UnknownComponent as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        return StreamingResponse(_chunks(stream), media_type="text/plain")

    return app


def _chunks(stream: Iterator[str]) -> Iterator[bytes]:
    for piece in stream:
        yield piece.encode()


class LogsServer:
    """uvicorn in a daemon thread; ``port`` 0 picks a free one."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="agent-logs-api", daemon=True)

    def start(self, timeout: float = 10.0) -> int:
        self._thread.start()
        for _ in range(int(timeout / 0.02)):
            if self._server.started:
                return self._server.servers[0].sockets[0].getsockname()[1]
            threading.Event().wait(0.02)
        raise RuntimeError("the agent's log API did not start")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
