"""Which side answers a request, by its ``Host``: a workload's origin, or Corral.

The outermost middleware of the app, so that nothing of Corral (its pages, its API, its
own middleware) ever answers on a workload's host name, and a workload's content never
answers on Corral's: ``w<id>.<apps domain>`` goes to ``WorkloadOrigin``, any other name
under the apps domain gets 404, and everything else goes on to Corral.
"""

from __future__ import annotations

from starlette.datastructures import State
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from corral.api.workload_origin import WorkloadOrigin
from corral.services.app_origins import HostKind


class HostDispatch:
    def __init__(self, app: ASGIApp, *, state: State) -> None:
        self.app = app
        self.state = state
        self.workloads = WorkloadOrigin(state)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan
            return
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
        kind, workload_id = self.state.app_origins.classify(host)
        if kind is HostKind.CORRAL:
            await self.app(scope, receive, send)
        elif kind is HostKind.WORKLOAD:
            await self.workloads({**scope, "corral.workload_id": workload_id}, receive, send)
        elif scope["type"] == "websocket":
            await WebSocket(scope, receive, send).close(code=1008)
        else:
            await PlainTextResponse("no workload answers at this name\n", status_code=404)(scope, receive, send)
