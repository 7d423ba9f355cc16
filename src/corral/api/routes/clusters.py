"""Clusters (admins register them; members see those their projects have quota on) and
the agent's endpoints, authenticated with the cluster's own token."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from corral.api.deps import AgentCluster, AgentToken, AppSettings, CurrentUser, Db, agent_cluster
from corral.api.responses import FastJSONResponse
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
from corral.scheduler import wakeup
from corral.services import clusters as cluster_service
from corral.services import discovery, dispatch, keys
from corral.services import usage as usage_service
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
        # Quota use and allocation over time: sampled while the cluster's agent is heard from.
        usage_service.record_history_if_due(conn, cluster.id, usage_service.Retention.of(settings))
    return result


@router.post("/agent/found", tags=["agent"])
def report_found(body: FoundBatch, cluster: AgentCluster, db: Db, settings: AppSettings) -> dict:
    """Workloads running on the cluster that Corral did not start: recorded as Custom
    workloads (once; the answer names each one's workload and component)."""
    found = [discovery.Found(i.native_name, i.kind, i.command, i.gpu, i.started_at, i.project, cpu=i.cpu,
                             memory=i.memory, ephemeral_storage=i.ephemeral_storage) for i in body.items]
    with write_tx(db) as conn:
        return {"items": discovery.record_found(conn, cluster, found, settings.default_project_name)}


MAX_WAIT_S = 60.0
_SHUTDOWN_CHECK_S = 0.5  # a held poll notices the server stopping this soon
_REREAD_S = 0.02  # a held poll reads again at most this often


@router.get("/agent/work", tags=["agent"])
async def agent_work(request: Request, cluster: AgentCluster, db: Db, settings: AppSettings,
                     after: int | None = Query(None, ge=0, le=MAX_ID),
                     wait: float = Query(0.0, ge=0, le=MAX_WAIT_S)) -> dict:
    """What the agent should run or stop: changes since event ``after``, or everything.

    With ``wait`` (seconds) and a cursor, a poll that finds nothing is held open until
    there is something for this cluster (woken when events are written: see
    ``corral.scheduler.wakeup``) or ``wait`` has passed; the answer says ``wait`` back, so
    an agent knows the server held it (an older server ignores the parameter)."""
    keyring = keys.for_settings(settings)
    postgres = db.dialect.name == "postgresql"

    def read(since: int | None, reread: bool = True) -> dict:
        with read_tx(db) as conn:
            return dispatch.work_for(conn, cluster.id, since, postgres=postgres, keys=keyring, reread=reread)

    if wait <= 0 or after is None:
        return await run_in_threadpool(read, after)
    signal = wakeup.for_engine(db).agents  # woken by commits that wrote events agents act on
    deadline = time.monotonic() + wait
    stopping = request.app.state.shutting_down
    version = signal.version
    work = await run_in_threadpool(read, after)
    if work["items"] and postgres:
        # On PostgreSQL the answer repeats what recent events asked (late commits): only
        # events after the agent's cursor are news that end a held poll.
        news = await run_in_threadpool(read, after, False)
        if news["items"]:
            return {**work, "wait": wait}
        work = news
    while not work["items"]:
        read_at = time.monotonic()
        after = work["cursor"]
        seen = version
        while version == seen:  # read again only when events were written
            left = deadline - time.monotonic()
            if left <= 0 or stopping.is_set():
                return {**work, "wait": wait}
            version = await signal.wait_async(version, min(left, _SHUTDOWN_CHECK_S))
        # While writes stream in (a burst of submissions), at most one read per _REREAD_S.
        await asyncio.sleep(max(0.0, read_at + _REREAD_S - time.monotonic()))
        work = await run_in_threadpool(read, after, False)
    return {**work, "wait": wait}


@router.post("/agent/component-statuses", tags=["agent"])
def report_component_statuses(body: ComponentStatusBatch, token: AgentToken, db: Db) -> FastJSONResponse:
    """A batch of component statuses from the cluster; stale and foreign updates are ignored."""
    # On the path from a process's exit to its status shown: the cluster is looked up in
    # this route's thread, and the answer written without pydantic.
    cluster = agent_cluster(db, token)
    updates = [ComponentUpdate(u.component_id, ComponentStatus(u.status), u.reason, u.observed_at, u.native_name,
                               u.endpoint_url, u.removed, u.result) for u in body.updates]
    with write_tx(db) as conn:
        result = apply_component_updates(conn, updates, actor=f"{SYSTEM}:agent:{cluster.name}", cluster_id=cluster.id)
    return FastJSONResponse(result)
