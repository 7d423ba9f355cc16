"""Clusters: registered by admins, kept alive by their agent's heartbeat."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError

from corral.db.tables import clusters, project_members, quotas, workloads
from corral.domain.clusters import CLUSTER_KINDS, ClusterHealth, cluster_health
from corral.domain.names import check_dns_label
from corral.domain.resources import Resources, format_vector
from corral.services import events
from corral.services.clock import utcnow
from corral.services.errors import Conflict, InvalidInput, NotFound
from corral.services.principal import SYSTEM, Principal
from corral.services.users import hash_token, new_secret

AGENT_TOKEN_PREFIX = "crla_"
_COLUMNS = (
    clusters.c.id, clusters.c.name, clusters.c.kind, clusters.c.description, clusters.c.capacity_gpu,
    clusters.c.capacity_cpu, clusters.c.capacity_memory, clusters.c.capacity_ephemeral_storage, clusters.c.nodes,
    clusters.c.last_heartbeat_at, clusters.c.created_at, clusters.c.isolation,
)


def capacity_of(row: Any) -> Resources:
    return Resources(row.capacity_gpu, row.capacity_cpu, row.capacity_memory, row.capacity_ephemeral_storage)


def node_amounts(nodes: list[dict[str, Any]]) -> tuple[tuple[int, int, int, int], ...]:
    """What each node the agent reported has: (gpu, cpu millicores, memory, ephemeral storage)."""
    out = []
    for node in nodes:
        c = node.get("capacity") or {}
        out.append((int(c.get("gpu", 0)), int(c.get("cpu", 0)), int(c.get("memory", 0)),
                    int(c.get("ephemeral_storage", 0))))
    return tuple(out)


def _cluster_dict(row: Any, unhealthy_after_s: float) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "kind": row.kind,
        "description": row.description,
        "status": cluster_health(row.last_heartbeat_at, utcnow(), unhealthy_after_s).value,
        "capacity": capacity_of(row).as_dict(),
        "nodes": row.nodes,
        "last_heartbeat_at": row.last_heartbeat_at,
        "created_at": row.created_at,
        "isolation": row.isolation,
    }


def _visible(query: Any, principal: Principal) -> Any:
    """Members see the clusters where one of their projects holds a quota."""
    if principal.is_admin:
        return query
    return query.where(exists().where(
        quotas.c.cluster_id == clusters.c.id,
        quotas.c.project_id == project_members.c.project_id,
        project_members.c.user_id == principal.user_id,
    ))


def get_cluster(conn: Connection, principal: Principal, name: str, unhealthy_after_s: float) -> dict[str, Any]:
    row = conn.execute(_visible(select(*_COLUMNS).where(clusters.c.name == name), principal)).first()
    if row is None:
        raise NotFound(f"cluster {name!r} not found", field="cluster")
    return _cluster_dict(row, unhealthy_after_s)


def list_clusters(conn: Connection, principal: Principal, unhealthy_after_s: float) -> list[dict[str, Any]]:
    rows = conn.execute(_visible(select(*_COLUMNS).order_by(clusters.c.name), principal))
    return [_cluster_dict(r, unhealthy_after_s) for r in rows]


def _check_capacity(capacity: Resources) -> None:
    if any(v < 0 for v in capacity.as_tuple()):
        raise InvalidInput("capacity must not be negative", field="capacity")


def create_cluster(
    conn: Connection, principal: Principal, *, name: str, kind: str, description: str = "",
    capacity: Resources | None = None, unhealthy_after_s: float,
) -> tuple[str, dict[str, Any]]:
    """Register a cluster; returns its agent's token (shown this once) and the cluster."""
    principal.require_admin()
    try:
        check_dns_label(name)
    except ValueError as exc:
        raise InvalidInput(f"cluster name {exc}", field="name") from None
    if kind not in CLUSTER_KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(CLUSTER_KINDS)}", field="kind")
    capacity = capacity or Resources()
    _check_capacity(capacity)
    token = new_secret(AGENT_TOKEN_PREFIX)
    try:
        with conn.begin_nested():
            cluster_id = conn.execute(insert(clusters).values(
                name=name, kind=kind, description=description, capacity_gpu=capacity.gpu,
                capacity_cpu=capacity.cpu, capacity_memory=capacity.memory,
                capacity_ephemeral_storage=capacity.ephemeral_storage, nodes=[],
                agent_token_hash=hash_token(token), created_at=utcnow(),
            ).returning(clusters.c.id)).scalar_one()
    except IntegrityError:
        raise Conflict(f"a cluster named {name!r} already exists", field="name", code="already_exists") from None
    events.record(conn, actor=principal.email, subject_type="cluster", subject_id=cluster_id,
                  kind="cluster_created", message=f"cluster {name} ({kind}) registered")
    return token, get_cluster(conn, principal, name, unhealthy_after_s)


def update_cluster(
    conn: Connection, principal: Principal, name: str, *, description: str | None = None,
    capacity: Resources | None = None, unhealthy_after_s: float,
) -> dict[str, Any]:
    principal.require_admin()
    cluster = get_cluster(conn, principal, name, unhealthy_after_s)
    values: dict[str, Any] = {}
    if description is not None:
        values["description"] = description
    if capacity is not None:
        _check_capacity(capacity)
        values.update(capacity_gpu=capacity.gpu, capacity_cpu=capacity.cpu, capacity_memory=capacity.memory,
                      capacity_ephemeral_storage=capacity.ephemeral_storage)
    if values:
        conn.execute(update(clusters).where(clusters.c.id == cluster["id"]).values(**values))
        events.record(conn, actor=principal.email, subject_type="cluster", subject_id=cluster["id"],
                      kind="cluster_updated", message="cluster updated: " + ", ".join(sorted(values)))
    return get_cluster(conn, principal, name, unhealthy_after_s)


def rotate_agent_token(conn: Connection, principal: Principal, name: str, unhealthy_after_s: float) -> str:
    principal.require_admin()
    cluster = get_cluster(conn, principal, name, unhealthy_after_s)
    token = new_secret(AGENT_TOKEN_PREFIX)
    conn.execute(update(clusters).where(clusters.c.id == cluster["id"]).values(agent_token_hash=hash_token(token)))
    events.record(conn, actor=principal.email, subject_type="cluster", subject_id=cluster["id"],
                  kind="agent_token_rotated", message="agent token replaced; the old one no longer works")
    return token


def delete_cluster(conn: Connection, principal: Principal, name: str, unhealthy_after_s: float) -> None:
    principal.require_admin()
    cluster = get_cluster(conn, principal, name, unhealthy_after_s)
    if conn.execute(select(workloads.c.id).where(workloads.c.cluster_id == cluster["id"]).limit(1)).first():
        raise Conflict(f"cluster {name!r} still has workloads; it cannot be removed", code="cluster_not_empty")
    conn.execute(delete(clusters).where(clusters.c.id == cluster["id"]))
    events.record(conn, actor=principal.email, subject_type="cluster", subject_id=cluster["id"],
                  kind="cluster_deleted", message=f"cluster {name} removed")


def local_agent_token(conn: Connection, name: str) -> str | None:
    """A fresh agent token for the built-in local cluster, whose agent runs inside the
    server (each start replaces the previous one); None if there is no such cluster."""
    token = new_secret(AGENT_TOKEN_PREFIX)
    result = conn.execute(update(clusters).where(clusters.c.name == name, clusters.c.kind == "local")
                          .values(agent_token_hash=hash_token(token)))
    return token if result.rowcount == 1 else None


def cluster_for_agent(conn: Connection, token: str) -> Any | None:
    if not token.startswith(AGENT_TOKEN_PREFIX):
        return None
    return conn.execute(select(*_COLUMNS).where(clusters.c.agent_token_hash == hash_token(token))).first()


def record_heartbeat(
    conn: Connection, cluster_id: int, *, capacity: Resources | None, nodes: list[dict[str, Any]] | None,
    unhealthy_after_s: float, agent_url: str | None = None, isolation: str | None = None,
) -> dict[str, Any]:
    """The agent is alive; it may also report capacity, nodes and where its log API is."""
    now = utcnow()
    row = conn.execute(select(*_COLUMNS).where(clusters.c.id == cluster_id)).one()
    before = cluster_health(row.last_heartbeat_at, now, unhealthy_after_s)
    values: dict[str, Any] = {"last_heartbeat_at": now}
    if capacity is not None:
        _check_capacity(capacity)
        values.update(capacity_gpu=capacity.gpu, capacity_cpu=capacity.cpu, capacity_memory=capacity.memory,
                      capacity_ephemeral_storage=capacity.ephemeral_storage)
    if nodes is not None:
        values["nodes"] = nodes
    if agent_url is not None:
        values["agent_url"] = agent_url
    if isolation is not None:
        values["isolation"] = isolation
    conn.execute(update(clusters).where(clusters.c.id == cluster_id).values(**values))
    if before is not ClusterHealth.HEALTHY:
        events.record(conn, actor=SYSTEM, subject_type="cluster", subject_id=cluster_id, kind="cluster_healthy",
                      message=f"agent heard from; cluster was {before.value}, now healthy")
    if capacity is not None and capacity != capacity_of(row):
        events.record(conn, actor=SYSTEM, subject_type="cluster", subject_id=cluster_id,
                      kind="capacity_changed", message=f"capacity reported: {format_vector(capacity.as_dict())}")
    elif nodes is not None and node_amounts(nodes) != node_amounts(row.nodes or []):
        # The same total, other nodes (one drained, another back): what fits on a node changed.
        events.record(conn, actor=SYSTEM, subject_type="cluster", subject_id=cluster_id,
                      kind="capacity_changed", message=f"nodes reported: {len(nodes)}")
    return {"cluster": row.name, "status": ClusterHealth.HEALTHY.value}
