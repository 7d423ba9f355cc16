"""The model store (what each cluster's agent reports of its projects' stores) and
evaluation results; and the agent's endpoint that reports a store's inventory."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from corral.api.deps import AgentCluster, CurrentUser, Db
from corral.api.routing import MAX_ID, ApiRoute, Id
from corral.db.engine import read_tx, write_tx
from corral.domain.results import MODEL_NAME
from corral.services import models as model_service

router = APIRouter(tags=["models"], route_class=ApiRoute)


class ModelEntryIn(BaseModel):
    """One model of a project's store, from its manifest (``corral-model.json``)."""

    model_config = ConfigDict(extra="forbid")
    project: str = Field(min_length=1, max_length=64)
    name: str = Field(max_length=128, pattern=rf"^{MODEL_NAME.pattern}$")
    kind: str | None = Field(None, max_length=32)
    source: str | None = Field(None, max_length=2048)
    revision: str | None = Field(None, max_length=256)
    base_model: str | None = Field(None, max_length=512)
    dataset: str | None = Field(None, max_length=512)
    workload_id: int | None = Field(None, ge=1, le=MAX_ID)
    files: int = Field(0, ge=0, le=2**63 - 1)
    bytes: int = Field(0, ge=0, le=2**63 - 1)
    created_at: str | None = Field(None, max_length=64, description="ISO 8601, as in the manifest")


class ModelInventoryIn(BaseModel):
    """A page of a cluster's inventory: the models whose (project, name) lies after
    ``after`` and up to ``through`` (both absent: the whole inventory; see
    ``services.models.record_inventory``)."""

    model_config = ConfigDict(extra="forbid")
    models: list[ModelEntryIn] = Field(max_length=10_000)
    after: tuple[str, str] | None = Field(None, description="(project, name) the page starts after; none: the start")
    through: tuple[str, str] | None = Field(None, description="(project, name) the page ends at; none: the end")


class WorkloadRef(BaseModel):
    id: int
    name: str | None


class ModelOut(BaseModel):
    id: int
    name: str
    project: str
    cluster: str
    kind: str
    source: str | None
    revision: str | None
    base_model: str | None
    dataset: str | None
    files: int
    bytes: int
    workload: WorkloadRef | None = Field(description="the workload that produced it (download, training)")
    created_at: datetime | None = Field(description="when it was written to the store")
    reported_at: datetime = Field(description="when its cluster's agent last reported it changed")


class ModelPage(BaseModel):
    items: list[ModelOut]
    page: int
    page_size: int
    total: int


class EvaluationOut(BaseModel):
    id: int
    name: str
    cluster: str
    status: str
    model: str | None
    dataset: str | None
    tasks: list[Any] | None
    created_at: datetime
    finished_at: datetime | None
    metrics: dict[str, Any] | None = Field(description="metric name -> number or text; None until reported")
    error: str | None = Field(description="why what the evaluation left was refused, if it was")


class Evaluations(BaseModel):
    evaluations: list[EvaluationOut]
    metric_names: list[str] = Field(description="every metric any of them reported: one column each")


class ModelDetail(ModelOut, Evaluations):
    """A model, and the evaluations of it (same project, cluster and name), newest first."""


@router.get("/models", response_model=ModelPage)
def list_models(principal: CurrentUser, db: Db,
                project: str | None = Query(None, max_length=64),
                cluster: str | None = Query(None, max_length=64),
                name: str | None = Query(None, max_length=128),
                page: int = Query(1, ge=1, le=1_000_000),
                page_size: int = Query(50, ge=1, le=model_service.MAX_PAGE_SIZE)) -> dict:
    """Models in the stores of the caller's projects (an admin: every project), by project,
    name and cluster. A model is listed while its cluster's store holds it."""
    with read_tx(db) as conn:
        return model_service.list_models(conn, principal, project=project, cluster=cluster, name=name,
                                         page=page, page_size=page_size)


@router.get("/models/{model_id}", response_model=ModelDetail)
def get_model(model_id: Id, principal: CurrentUser, db: Db) -> dict:
    """One model, with its evaluations' metrics side by side."""
    with read_tx(db) as conn:
        return model_service.get_model(conn, principal, model_id)


@router.get("/evaluations", response_model=Evaluations)
def list_evaluations(principal: CurrentUser, db: Db, project: str = Query(max_length=64),
                     model: str | None = Query(None, max_length=512),
                     cluster: str | None = Query(None, max_length=64)) -> dict:
    """A project's evaluations (of one ``model`` if given), newest first (at most 200), each
    with its metrics; ``metric_names`` lists every metric for a column each."""
    with read_tx(db) as conn:
        return model_service.list_evaluations(conn, principal, project=project, model=model, cluster=cluster)


@router.put("/agent/models", tags=["agent"])
def report_models(body: ModelInventoryIn, cluster: AgentCluster, db: Db) -> dict:
    """The cluster's model stores (every project's), whole or one page of them: replaces what
    was known in the page's range, so a model removed or replaced on disk is removed or
    replaced here."""
    entries = [m.model_dump() for m in body.models]
    with write_tx(db) as conn:
        return model_service.record_inventory(conn, cluster.id, entries, after=body.after, through=body.through)
