"""Clusters (admins register them; members see those their projects have quota on) and
the agent's endpoints, authenticated with the cluster's own token."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response, status

from corral.api.deps import AgentCluster, AppSettings, CurrentUser, Db
from corral.api.routing import MAX_ID, ApiRoute
from corral.api.schemas import (
    ClusterCreated,
    ClusterIn,
    ClusterOut,
    ClusterPatch,
    ComponentStatusBatch,
    FoundBatch,
    HeartbeatIn,
)
from corral.db.engine import read_tx, write_tx
from corral.domain.statuses import ComponentStatus
from corral.services import clusters as cluster_service
from corral.services import discovery, dispatch, keys
from corral.services.principal import SYSTEM
from corral.services.status import ComponentUpdate, apply_component_updates

router = APIRouter(tags=["clusters"], route_class=ApiRoute)


@router.get("/clusters", response_model=list[ClusterOut])
def list_clusters(principal: CurrentUser, db: Db, settings: AppSettings) -> list[dict]:
    with read_tx(db) as conn:
        return cluster_service.list_clusters(conn, principal, settings.cluster_unhealthy_after_s)


@router.post("/clusters", response_model=ClusterCreated, status_code=status.HTTP_201_CREATED)
def create_cluster(body: ClusterIn, principal: CurrentUser, db: Db, settings: AppSettings) -> dict:
    with write_tx(db) as conn:
        token, cluster = cluster_service.create_cluster(
            conn, principal, name=body.name, kind=body.kind, description=body.description,
            capacity=body.capacity.to_domain() if body.capacity else None,
            unhealthy_after_s=settings.cluster_unhealthy_after_s)
    return {**cluster, "agent_token": token}


@router.get("/clusters/{name}", response_model=ClusterOut)
def get_cluster(name: str, principal: CurrentUser, db: Db, settings: AppSettings) -> dict:
    with read_tx(db) as conn:
        return cluster_service.get_cluster(conn, principal, name, settings.cluster_unhealthy_after_s)


@router.patch("/clusters/{name}", response_model=ClusterOut)
def update_cluster(name: str, body: ClusterPatch, principal: CurrentUser, db: Db, settings: AppSettings) -> dict:
    with write_tx(db) as conn:
        return cluster_service.update_cluster(
            conn, principal, name, description=body.description,
            capacity=body.capacity.to_domain() if body.capacity else None,
            unhealthy_after_s=settings.cluster_unhealthy_after_s)


@router.post("/clusters/{name}/agent-token")
def rotate_agent_token(name: str, principal: CurrentUser, db: Db, settings: AppSettings) -> dict:
    with write_tx(db) as conn:
        token = cluster_service.rotate_agent_token(conn, principal, name, settings.cluster_unhealthy_after_s)
    return {"cluster": name, "agent_token": token}


@router.delete("/clusters/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_cluster(name: str, principal: CurrentUser, db: Db, settings: AppSettings) -> Response:
    with write_tx(db) as conn:
        cluster_service.delete_cluster(conn, principal, name, settings.cluster_unhealthy_after_s)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/agent/heartbeat", tags=["agent"])
def heartbeat(body: HeartbeatIn, cluster: AgentCluster, db: Db, settings: AppSettings) -> dict:
    nodes = None if body.nodes is None else [
        {"name": n.name, "capacity": n.capacity.to_domain().as_dict(), "gpu_vendor": n.gpu_vendor,
         "gpu_model": n.gpu_model} for n in body.nodes
    ]
    with write_tx(db) as conn:
        result = cluster_service.record_heartbeat(
            conn, cluster.id, capacity=body.capacity.to_domain() if body.capacity else None, nodes=nodes,
            unhealthy_after_s=settings.cluster_unhealthy_after_s, agent_url=body.agent_url,
            isolation=body.isolation)
    return result


@router.post("/agent/found", tags=["agent"])
def report_found(body: FoundBatch, cluster: AgentCluster, db: Db, settings: AppSettings) -> dict:
    """Workloads running on the cluster that Corral did not start: recorded as Custom
    workloads (once; the answer names each one's workload and component)."""
    found = [discovery.Found(i.native_name, i.kind, i.command, i.gpu, i.started_at, i.project, cpu=i.cpu,
                             memory=i.memory, ephemeral_storage=i.ephemeral_storage) for i in body.items]
    with write_tx(db) as conn:
        return {"items": discovery.record_found(conn, cluster, found, settings.default_project_name)}


@router.get("/agent/work", tags=["agent"])
def agent_work(cluster: AgentCluster, db: Db, settings: AppSettings,
               after: int | None = Query(None, ge=0, le=MAX_ID)) -> dict:
    """What the agent should run or stop: changes since event ``after``, or everything."""
    with read_tx(db) as conn:
        return dispatch.work_for(conn, cluster.id, after, postgres=db.dialect.name == "postgresql",
                                 keys=keys.for_settings(settings))


@router.post("/agent/component-statuses", tags=["agent"])
def report_component_statuses(body: ComponentStatusBatch, cluster: AgentCluster, db: Db) -> dict:
    """A batch of component statuses from the cluster; stale and foreign updates are ignored."""
    updates = [ComponentUpdate(u.component_id, ComponentStatus(u.status), u.reason, u.observed_at, u.native_name,
                               u.endpoint_url, u.removed) for u in body.updates]
    with write_tx(db) as conn:
        result = apply_component_updates(conn, updates, actor=f"{SYSTEM}:agent:{cluster.name}", cluster_id=cluster.id)
    return result
