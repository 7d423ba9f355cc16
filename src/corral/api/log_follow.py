"""A workload's output, relayed from its cluster's agent without holding a worker thread.

With ``follow`` the stream can stay open for hours, so it is async end to end (an
``httpx.AsyncClient`` stream from the agent, ``FollowResponse`` to the user) and ends:

- when the user leaves (the connection closes: the upstream connection closes with it,
  and the agent's follower ends too);
- when the viewer may no longer read it: the token or session is re-checked every
  ``CORRAL_LOG_FOLLOW_RECHECK_S`` (revoked, expired, user disabled, removed from the project);
- when the server is asked to stop (``app.state.shutting_down``, set by `corral serve`).

Each user may hold ``CORRAL_MAX_LOG_FOLLOWERS_PER_USER`` streams per server process; one
more answers 429 with Retry-After.
"""

from __future__ import annotations

import logging

import anyio
import httpx
from fastapi import FastAPI, Request
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from corral.api.deps import token_or_session
from corral.api.errors import error_body
from corral.api.responses import FastJSONResponse
from corral.db.engine import read_tx
from corral.follow import FollowResponse, Guard, until_set
from corral.services.errors import ClusterUnavailable, NotFound, ServiceError
from corral.services.principal import Principal
from corral.services.reach import LogSource
from corral.services.web_sessions import session_cookie_name
from corral.services.workloads import visible_workload

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5


class Followers:
    """Follow streams open per user in this process. Used from the event loop only."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._open: dict[int, int] = {}

    def acquire(self, user_id: int) -> bool:
        if self._open.get(user_id, 0) >= self.cap:
            return False
        self._open[user_id] = self._open.get(user_id, 0) + 1
        return True

    def release(self, user_id: int) -> None:
        left = self._open.get(user_id, 0) - 1
        if left > 0:
            self._open[user_id] = left
        else:
            self._open.pop(user_id, None)


def _followers(app: FastAPI) -> Followers:
    registry = getattr(app.state, "log_followers", None)
    if registry is None:
        registry = app.state.log_followers = Followers(app.state.settings.max_log_followers_per_user)
    return registry


async def relay(request: Request, principal: Principal, source: LogSource, *, workload_id: int, tail: int,
                follow: bool) -> Response:
    app = request.app
    registry = _followers(app)
    if follow and not registry.acquire(principal.user_id):
        message = (f"you already follow {registry.cap} outputs, the most one user may at once; "
                   "close one and try again")
        return FastJSONResponse(error_body("too_many_followers", message), status_code=429,
                                headers={"Retry-After": str(RETRY_AFTER_S)})
    client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None if follow else 30.0))

    async def close(upstream: httpx.Response | None = None) -> None:
        if upstream is not None:
            await upstream.aclose()
        await client.aclose()
        if follow:
            registry.release(principal.user_id)

    try:
        upstream = await client.send(client.build_request(
            "GET", source.url, params={"tail": tail, "follow": str(follow).lower()},
            headers={"Authorization": f"Bearer {source.key}"}), stream=True)
    except BaseException as exc:
        with anyio.CancelScope(shield=True):
            await close()
        if isinstance(exc, httpx.HTTPError):
            raise ClusterUnavailable("the cluster's agent cannot be reached for output "
                                     f"({type(exc).__name__})") from exc
        raise
    if upstream.status_code != 200:
        await close(upstream)
        if upstream.status_code == 404:
            raise NotFound(f"no output recorded for workload {workload_id} on its cluster")
        raise ClusterUnavailable(f"the cluster's agent answered {upstream.status_code} for output")

    guards: list[Guard] = [until_set(app.state.shutting_down)]
    if follow:
        guards.append(_until_unauthorized(app.state.engine, request.headers.get("authorization"),
                                          request.cookies.get(session_cookie_name(request.url.scheme == "https")),
                                          principal, workload_id,
                                          app.state.settings.log_follow_recheck_s))
    return FollowResponse(upstream.aiter_raw(), stop_when=guards, on_close=lambda: close(upstream))


def _until_unauthorized(engine: Engine, authorization: str | None, session_cookie: str | None,
                        principal: Principal, workload_id: int, every_s: float) -> Guard:
    """Returns once the credential that opened the stream no longer reads this workload."""

    def allowed() -> bool:
        now = token_or_session(engine, authorization, session_cookie)
        if now is None or now.user_id != principal.user_id:
            return False
        try:
            with read_tx(engine) as conn:
                visible_workload(conn, now, workload_id)
        except NotFound:
            return False
        return True

    async def guard() -> None:
        while True:
            await anyio.sleep(every_s)
            try:
                if not await run_in_threadpool(allowed):
                    return
            except ServiceError:
                return
            except Exception:  # noqa: BLE001 - a database hiccup does not end a stream; the next check decides
                log.warning("re-checking a log follower's credentials failed", exc_info=True)

    return guard
