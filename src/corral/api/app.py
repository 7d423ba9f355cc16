"""The FastAPI application."""

from __future__ import annotations

import asyncio
import threading
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from sqlalchemy import Engine

from corral import __version__, web
from corral.api import docs, errors
from corral.api.body_limit import BodyLimit
from corral.api.host_dispatch import HostDispatch
from corral.api.responses import FastJSONResponse
from corral.api.routes import bulk_delete, clusters, identity, metrics, models, projects, proxy, workloads
from corral.api.routes import usage as usage_routes
from corral.db.engine import make_engine
from corral.scheduler import wakeup
from corral.services.app_origins import AppOrigins
from corral.services.submit_batcher import SubmitBatcher
from corral.settings import Settings, get_settings


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = engine or make_engine(settings.resolved_database_url(), pool_size=settings.http_threads + 4)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        # More threads than the pool has connections would only queue on the pool; fewer
        # than a few dozen keep a 2-core machine from thrashing between them.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.http_threads
        app.state.submit_batcher.follow_loop(asyncio.get_running_loop())
        yield
        app.state.submit_batcher.close()

    app = FastAPI(
        title="Corral",
        version=__version__,
        description="A self-hosted control plane for AI workloads.",
        default_response_class=FastJSONResponse,
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc are served with bundled assets (docs.install), no CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    wakeup.for_engine(engine, cross_process=False)  # commits that write events wake waiters (NOTIFY)
    # Set when the server is asked to stop (corral serve): long streams such as log follow end.
    app.state.shutting_down = threading.Event()
    app.state.submit_batcher = SubmitBatcher(engine, unhealthy_after_s=settings.cluster_unhealthy_after_s)
    errors.install(app)
    metrics.install(app)  # GET /metrics, and the request latency histogram (inside the middlewares below)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)  # outermost: before anything reads
    # Added after every other middleware, so it wraps them all: a workload's host name
    # (w<id>.<apps domain>) reaches its proxy and nothing of Corral's (its bodies stream
    # through to the service unparsed), and Corral answers only on other names.
    app.state.app_origins = AppOrigins.from_settings(settings)
    app.add_middleware(HostDispatch, state=app.state)
    # Routes are matched in order: the busiest first (submissions, the list, the agents' calls).
    for module in (workloads, bulk_delete, clusters, identity, projects, models):
        app.include_router(module.router, prefix="/api/v1")
    app.include_router(usage_routes.router, prefix="/api/v1")  # use over time (issue 14)
    errors.document_errors(app)
    app.include_router(proxy.router)  # /proxy/{workload id}/...: off (404) unless CORRAL_PATH_PROXY_UNSAFE
    docs.install(app)  # /docs (Swagger UI) and /redoc (ReDoc), assets served by Corral
    web.install(app)  # the browser UI at /

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict:
        return {"status": "ok", "version": __version__}

    return app
