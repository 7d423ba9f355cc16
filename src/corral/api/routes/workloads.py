"""Workloads: submit, list (the seed's table), details, delete, stats, output."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from corral.api import log_follow
from corral.api.deps import CurrentReader, CurrentUser, Db
from corral.api.responses import FastJSONResponse
from corral.api.routing import MAX_ID, ApiRoute, Id
from corral.api.schemas import WorkloadCreated, WorkloadDetail, WorkloadPage, WorkloadStats, shown_vector
from corral.api.submit_auth import SubmitToken
from corral.db.engine import read_tx, write_tx
from corral.domain.workloads import WorkloadSpec
from corral.services import app_origins, export, listing, reach, workloads as workload_service

router = APIRouter(tags=["workloads"], route_class=ApiRoute)


@router.post("/workloads", response_model=WorkloadCreated, status_code=status.HTTP_201_CREATED)
async def submit(spec: WorkloadSpec, token_hash: SubmitToken, request: Request) -> FastJSONResponse:
    """Submit a workload. It is queued (Pending, with the reason) until admitted on its cluster.

    Refused with 422 if the request alone exceeds the project's quota limit, 503 if the
    cluster is unhealthy.
    """
    # Checked and written with the submissions that arrive meanwhile, in one transaction
    # (group commit); answered once committed. Async: no thread waits for the batch.
    created = await asyncio.wrap_future(request.app.state.submit_batcher.submit_async(token_hash, spec))
    return FastJSONResponse({**created, "resources": shown_vector(created["resources"])},
                            status_code=status.HTTP_201_CREATED)


# No I/O: async, so that it costs no hop to the thread pool per request (api/deps.py).
async def _list_query(
    project: Annotated[str | None, Query(description="project name; default: every project you can see")] = None,
    page: Annotated[int | None, Query(ge=1, le=listing.MAX_PAGE, description="page number (a jump); "
                                                                         "default 1, or the cursor's")] = None,
    cursor: Annotated[str | None, Query(description="a page's next_cursor or prev_cursor (same sort, "
                                                    "filters and page size): pages on without an OFFSET")] = None,
    page_size: Annotated[int, Query(ge=1, le=listing.MAX_PAGE_SIZE)] = 20,
    sort: Annotated[str, Query(description="column, '-' prefix for descending: "
                                           + ", ".join(listing.SORT_COLUMNS))] = "-created_at",
    name: Annotated[str | None, Query(max_length=128, description="name contains (case-insensitive)")] = None,
    type: Annotated[list[str], Query(description="one or more workload types")] = [],  # noqa: B006
    status_: Annotated[list[str], Query(alias="status", description="one or more statuses; "
                                                                    "default: all but Deleted")] = [],  # noqa: B006
    cluster: Annotated[str | None, Query(max_length=64)] = None,
    created_by: Annotated[str | None, Query(max_length=254, description="creator's email")] = None,
) -> listing.WorkloadQuery:
    return listing.WorkloadQuery(project=project, page=page, page_size=page_size, sort=sort, name=name or None,
                                 types=type, statuses=status_, cluster=cluster, created_by=created_by,
                                 cursor=cursor)


ListQuery = Annotated[listing.WorkloadQuery, Depends(_list_query)]


@router.get("/workloads", response_model=WorkloadPage)
def list_workloads(principal: CurrentUser, db: Db, query: ListQuery) -> FastJSONResponse:
    """The Workloads table: one page (by number, or by a page's cursor), sorted and filtered."""
    with read_tx(db) as conn:
        page = listing.list_workloads(conn, principal, query)
    return FastJSONResponse({**page, "items": [{**i, "resources": shown_vector(i["resources"])}
                                               for i in page["items"]]})


@router.get("/workloads.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}, "description": "a header line, then one line a workload"}})
def export_workloads_csv(principal: CurrentUser, db: Db, query: ListQuery) -> StreamingResponse:
    """Every workload the filters match (all pages, not one), sorted as asked, as CSV
    (what the Workloads page's Export CSV downloads): the list's parameters, without
    ``page``, ``cursor`` and ``page_size``. Text a spreadsheet would run as a formula
    starts with ``'``."""
    query = replace(query, page=None, cursor=None, page_size=20)
    export.check(db, principal, query)  # an error is an error, not a CSV cut short
    filename = f"workloads-{query.project or 'all'}.csv"
    return StreamingResponse(export.csv_lines(db, principal, query), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                      "Cache-Control": "no-store"})


@router.get("/workloads/stats", response_model=WorkloadStats)
def workload_stats(project: str, principal: CurrentUser, db: Db) -> dict:
    with read_tx(db) as conn:
        return workload_service.stats(conn, principal, project)


@router.get("/workloads/{workload_id}", response_model=WorkloadDetail)
def get_workload(workload_id: Id, principal: CurrentUser, db: Db, request: Request) -> FastJSONResponse:
    with read_tx(db) as conn:
        return FastJSONResponse(_shown(request, workload_service.get_workload(conn, principal, workload_id)))


@router.delete("/workloads/{workload_id}", response_model=WorkloadDetail, status_code=status.HTTP_202_ACCEPTED)
def delete_workload(workload_id: Id, principal: CurrentUser, db: Db, request: Request) -> FastJSONResponse:
    """Queue the workload for deletion: Deleting, then Deleted once every component is."""
    with write_tx(db) as conn:
        detail = workload_service.request_delete(conn, principal, workload_id)
    return FastJSONResponse(_shown(request, detail), status_code=status.HTTP_202_ACCEPTED)


def _shown(request: Request, detail: dict) -> dict:
    """CPU in cores; endpoints on the workload's own origin (never where the service
    listens), and the page of Corral's that opens it in a browser."""
    corral_url = request.app.state.settings.public_url or str(request.base_url)
    detail = {**detail, "resources": shown_vector(detail["resources"]),
              "components": [{**c, "resources": shown_vector(c["resources"])} for c in detail["components"]]}
    return app_origins.present(detail, request.app.state.app_origins, corral_url)


@router.get("/workloads/{workload_id}/logs", response_class=StreamingResponse,
            responses={200: {"content": {"text/plain": {}}}})
async def workload_logs(request: Request, workload_id: Id, principal: CurrentReader, db: Db,
                  tail: Annotated[int, Query(ge=0, le=100_000, description="Last lines to start with")] = 100,
                  follow: Annotated[bool, Query(description="Keep streaming until the component ends")] = False,
                  component: Annotated[int | None, Query(ge=1, le=MAX_ID,
                                                         description="Component id (default: the main one)")] = None,
                  ) -> Response:
    """The workload's output, from its cluster's agent: the last ``tail`` lines, and with
    ``follow`` everything written after them until the component finishes, the viewer leaves
    or may no longer read it, or the server stops (at most CORRAL_MAX_LOG_FOLLOWERS_PER_USER at
    once per user: 429 beyond)."""
    def source() -> reach.LogSource:
        with read_tx(db) as conn:
            return reach.log_source(conn, principal, workload_id, component)

    # Async: a follow stream may stay open for hours and must not hold a worker thread.
    return await log_follow.relay(request, principal, await run_in_threadpool(source), workload_id=workload_id,
                                  tail=tail, follow=follow)
