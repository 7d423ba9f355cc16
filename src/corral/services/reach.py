"""Reaching what runs on a cluster for a user: a workload's output (through its cluster's
agent) and its service endpoint (through the control plane's proxy). Only members of the
workload's project (and admins) get anywhere; others get 404, as for the workload itself.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from sqlalchemy import Connection, select

from corral.db.tables import clusters, components
from corral.services.errors import Conflict, NotFound
from corral.services.principal import Principal
from corral.services.workloads import visible_workload


def agent_logs_key(agent_token_hash: str) -> str:
    """The credential the control plane presents to an agent's log API.

    Derived from the agent token's hash (which the control plane keeps and the agent can
    compute), so nothing more is stored, and rotating the token rotates it."""
    return hmac.new(agent_token_hash.encode(), b"corral-agent-logs", hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class LogSource:
    url: str  # the agent's log endpoint for one component
    key: str
    component_id: int


def log_source(conn: Connection, principal: Principal, workload_id: int, component_id: int | None) -> LogSource:
    row = visible_workload(conn, principal, workload_id)
    comps = conn.execute(select(components.c.id, components.c.kind, components.c.placed)
                         .where(components.c.workload_id == workload_id).order_by(components.c.id)).all()
    if component_id is not None:
        chosen = [c for c in comps if c.id == component_id]
        if not chosen:
            raise NotFound(f"workload {workload_id} has no component {component_id}")
    else:
        chosen = [c for c in comps if c.kind != "endpoint"] or comps
    comp = chosen[0]
    if not comp.placed:
        raise Conflict(f"workload {workload_id} has no output yet: it has not started on its cluster",
                       code="not_started")
    cluster = conn.execute(select(clusters.c.agent_url, clusters.c.agent_token_hash)
                           .where(clusters.c.id == row.cluster_id)).one()
    if not cluster.agent_url or not cluster.agent_token_hash:
        raise Conflict(f"the agent of cluster {row.cluster_name} does not serve output", code="no_agent_logs")
    return LogSource(f"{cluster.agent_url.rstrip('/')}/v1/logs/{comp.id}", agent_logs_key(cluster.agent_token_hash),
                     comp.id)


def service_endpoint(conn: Connection, principal: Principal, workload_id: int) -> str:
    """Where the workload's service answers, for the proxy."""
    row = visible_workload(conn, principal, workload_id)
    url = (row.endpoints or {}).get("server")
    if not url or row.status != "Running":
        raise Conflict(f"workload {workload_id} has no service endpoint (status {row.status}); "
                       "a workspace or inference service has one once it is Running", code="no_endpoint")
    return str(url)
