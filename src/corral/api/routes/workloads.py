"""Workloads: submit, list (the seed's table), details, delete, stats."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from corral.api.deps import AppSettings, CurrentUser, Db
from corral.api.responses import FastJSONResponse
from corral.api.schemas import WorkloadCreated, WorkloadDetail, WorkloadPage, WorkloadStats
from corral.db.engine import read_tx, write_tx
from corral.domain.workloads import WorkloadSpec
from corral.services import listing, workloads as workload_service

router = APIRouter(tags=["workloads"])


@router.post("/workloads", response_model=WorkloadCreated, status_code=status.HTTP_201_CREATED)
def submit(spec: WorkloadSpec, principal: CurrentUser, db: Db, settings: AppSettings,
           request: Request) -> FastJSONResponse:
    """Submit a workload. It is queued (Pending, with the reason) until admitted on its cluster.

    Refused with 422 if the request alone exceeds the project's quota limit, 503 if the
    cluster is unhealthy.
    """
    with read_tx(db) as conn:
        prepared = workload_service.prepare_submission(conn, principal, spec,
                                                       unhealthy_after_s=settings.cluster_unhealthy_after_s)
    created = request.app.state.submission_writer.submit(prepared)
    return FastJSONResponse(created, status_code=status.HTTP_201_CREATED)


@router.get("/workloads", response_model=WorkloadPage)
def list_workloads(
    principal: CurrentUser,
    db: Db,
    project: Annotated[str | None, Query(description="project name; default: every project you can see")] = None,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=listing.MAX_PAGE_SIZE)] = 20,
    sort: Annotated[str, Query(description="column, '-' prefix for descending: "
                                           + ", ".join(listing.SORT_COLUMNS))] = "-created_at",
    name: Annotated[str | None, Query(max_length=128, description="name contains (case-insensitive)")] = None,
    type: Annotated[list[str], Query(description="one or more workload types")] = [],  # noqa: B006
    status_: Annotated[list[str], Query(alias="status", description="one or more statuses; "
                                                                    "default: all but Deleted")] = [],  # noqa: B006
    cluster: Annotated[str | None, Query(max_length=64)] = None,
    created_by: Annotated[str | None, Query(max_length=254, description="creator's email")] = None,
) -> FastJSONResponse:
    query = listing.WorkloadQuery(project=project, page=page, page_size=page_size, sort=sort, name=name or None,
                                  types=type, statuses=status_, cluster=cluster, created_by=created_by)
    with read_tx(db) as conn:
        return FastJSONResponse(listing.list_workloads(conn, principal, query))


@router.get("/workloads/stats", response_model=WorkloadStats)
def workload_stats(project: str, principal: CurrentUser, db: Db) -> dict:
    with read_tx(db) as conn:
        return workload_service.stats(conn, principal, project)


@router.get("/workloads/{workload_id}", response_model=WorkloadDetail)
def get_workload(workload_id: int, principal: CurrentUser, db: Db) -> FastJSONResponse:
    with read_tx(db) as conn:
        return FastJSONResponse(workload_service.get_workload(conn, principal, workload_id))


@router.delete("/workloads/{workload_id}", response_model=WorkloadDetail, status_code=status.HTTP_202_ACCEPTED)
def delete_workload(workload_id: int, principal: CurrentUser, db: Db) -> FastJSONResponse:
    """Queue the workload for deletion: Deleting, then Deleted once every component is."""
    with write_tx(db) as conn:
        detail = workload_service.request_delete(conn, principal, workload_id)
    return FastJSONResponse(detail, status_code=status.HTTP_202_ACCEPTED)
