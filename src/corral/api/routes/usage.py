"""Use over time (issue 14): the agents' usage samples in, and the series the charts
draw out (a workload's per component, a project's quota use per cluster, a cluster's
allocation). Series take ``since`` and ``until`` (ISO 8601 with a time zone; default the
last 6 hours), at most 90 days apart; see ``corral.services.usage``."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query
from pydantic import Field

from corral.api.deps import AgentCluster, AppSettings, CurrentReader, Db
from corral.api.routing import ApiRoute, Id
from corral.api.schemas import Timestamp, _In
from corral.db.engine import read_tx, write_tx
from corral.services import usage as usage_service

router = APIRouter(tags=["usage"], route_class=ApiRoute)

_BIG = 2**62


class UsageSampleIn(_In):
    component_id: int = Field(ge=1, le=2**63 - 1)
    at: Timestamp
    cpu: int | None = Field(None, ge=0, le=_BIG, description="millicores, the mean since the previous sample")
    memory: int | None = Field(None, ge=0, le=_BIG, description="bytes")
    gpu_utilization: float | None = Field(None, ge=0, le=100, description="percent, the mean over its GPUs")
    gpu_memory: int | None = Field(None, ge=0, le=_BIG, description="bytes")


class UsageBatch(_In):
    samples: list[UsageSampleIn] = Field(max_length=5000)


Since = Query(None, description="from (ISO 8601 with a time zone); default: 6 hours before until")
Until = Query(None, description="to (ISO 8601 with a time zone); default: now")


@router.post("/agent/usage", tags=["agent"])
def report_usage(body: UsageBatch, cluster: AgentCluster, db: Db, settings: AppSettings) -> dict:
    """What the cluster's running components use; samples of components of other clusters
    are ignored."""
    samples = [usage_service.Sample(s.component_id, s.at, s.cpu, s.memory, s.gpu_utilization, s.gpu_memory)
               for s in body.samples]
    with write_tx(db) as conn:
        return usage_service.record_usage(conn, cluster.id, samples, usage_service.Retention.of(settings))


@router.get("/workloads/{workload_id}/usage")
def workload_usage(workload_id: Id, principal: CurrentReader, db: Db, since: datetime | None = Since,
                   until: datetime | None = Until) -> dict:
    """CPU (cores), memory (bytes), GPU utilisation (%) and GPU memory of each component over
    time, as columns: ``t`` (Unix seconds) and one list per measure (null: not measured)."""
    with read_tx(db) as conn:
        return usage_service.workload_usage(conn, principal, workload_id, since, until)


@router.get("/projects/{name}/quota-history")
def quota_history(name: str, principal: CurrentReader, db: Db, since: datetime | None = Since,
                  until: datetime | None = Until) -> dict:
    """Per cluster: used, borrowed, guaranteed and limit (null: unbounded) of GPUs, CPU
    (cores) and memory (bytes) over time, as sampled by the server."""
    with read_tx(db) as conn:
        return usage_service.project_quota_history(conn, principal, name, since, until)


@router.get("/clusters/{name}/allocation-history")
def allocation_history(name: str, principal: CurrentReader, db: Db, since: datetime | None = Since,
                       until: datetime | None = Until) -> dict:
    """Capacity, allocated (what admitted workloads hold) and guaranteed (to projects) of
    GPUs, CPU and memory over time. Administrators only."""
    with read_tx(db) as conn:
        return usage_service.cluster_allocation_history(conn, principal, name, since, until)
