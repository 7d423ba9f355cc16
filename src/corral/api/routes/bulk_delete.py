"""Deleting many workloads in one request: ``POST /workloads/delete``."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from corral.api.deps import CurrentUser, Db
from corral.api.responses import FastJSONResponse
from corral.api.routing import MAX_ID, ApiRoute
from corral.db.engine import read_tx, write_tx
from corral.services import bulk_delete

router = APIRouter(tags=["workloads"], route_class=ApiRoute)

WorkloadId = Annotated[int, Field(ge=1, le=MAX_ID)]


class BulkFilterIn(BaseModel):
    """The list endpoint's filters; at least one must be given."""

    model_config = ConfigDict(extra="forbid")
    project: str | None = Field(None, max_length=64)
    status: list[Annotated[str, Field(max_length=32)]] = Field(
        default_factory=list, max_length=16, description="one or more statuses; default: all but Deleted")
    type: list[Annotated[str, Field(max_length=32)]] = Field(default_factory=list, max_length=16)
    name: str | None = Field(None, max_length=128, description="name contains (case-insensitive)")
    cluster: str | None = Field(None, max_length=64)
    created_by: str | None = Field(None, max_length=254, description="creator's email")


class BulkDeleteIn(BaseModel):
    """Either ``ids`` or ``filter``."""

    model_config = ConfigDict(extra="forbid")
    ids: list[WorkloadId] | None = Field(None, max_length=bulk_delete.MAX_ITEMS)
    filter: BulkFilterIn | None = None
    dry_run: bool = Field(False, description="say what would be deleted; change nothing")

    @model_validator(mode="after")
    def _one_of(self) -> BulkDeleteIn:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("give either ids or filter (not both)")
        return self


class BulkItem(BaseModel):
    id: int
    name: str | None = Field(description="null when not found")
    project: str | None
    status: str | None = Field(description="the workload's status after the request (before it, in a dry run)")
    result: Literal["done", "already_deleting", "already_deleted", "not_found"]
    message: str


class BulkDeleteOut(BaseModel):
    dry_run: bool
    items: list[BulkItem]
    counts: dict[str, int]


@router.post("/workloads/delete", response_model=BulkDeleteOut)
def delete_workloads(body: BulkDeleteIn, principal: CurrentUser, db: Db) -> FastJSONResponse:
    """Queue many workloads for deletion, by ids (at most 10,000) or by a filter (the list's
    filters, at least one; at most 10,000 matches), in one transaction.

    Each workload gets a result: ``done`` (queued for deletion; with ``dry_run``: would be),
    ``already_deleting``, ``already_deleted``, or ``not_found`` (missing, or not visible to
    you). A dry run changes nothing."""
    f = body.filter
    flt = None if f is None else bulk_delete.BulkFilter(
        project=f.project, statuses=f.status, types=f.type, name=f.name or None, cluster=f.cluster,
        created_by=f.created_by)
    tx = read_tx if body.dry_run else write_tx
    with tx(db) as conn:
        return FastJSONResponse(bulk_delete.delete_many(conn, principal, ids=body.ids, filter=flt,
                                                        dry_run=body.dry_run))
