"""Workloads found on a cluster that Corral did not start: recorded as Custom workloads of
the project that owns them (the cluster's namespace, partition or account; on the local
cluster, which cannot tell, the default project), Running and admitted, so they count as
their project's usage (gpu, cpu, memory and ephemeral storage, as far as the cluster tells). They are never
preemption victims (recorded non-preemptible): Corral did not start them and cannot put
them back. When the agent no longer sees one it reports its component Completed, which
releases the usage.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, select

from corral.db.dialect import insert_returning_ids
from corral.db.tables import components, projects, workloads
from corral.domain.resources import Resources
from corral.domain.statuses import ComponentStatus, WorkloadStatus
from corral.domain.workloads import WorkloadType
from corral.services import events
from corral.services.clock import utcnow
from corral.services.status import add_counts, add_usage, count_delta, usage_delta


@dataclass(frozen=True)
class Found:
    native_name: str
    kind: str
    command: str
    gpu: int
    started_at: datetime | None
    project: str | None
    cpu: int = 0  # millicores
    memory: int = 0  # bytes
    ephemeral_storage: int = 0  # bytes


def record_found(conn: Connection, cluster: Any, found: list[Found], default_project: str) -> list[dict[str, Any]]:
    """Record what is new; answer every item with its workload and component ids."""
    names = [f.native_name for f in found]
    known = {r.name: r for r in conn.execute(
        select(components.c.name, components.c.id, components.c.workload_id)
        .join(workloads, and_(workloads.c.id == components.c.workload_id, workloads.c.cluster_id == cluster.id))
        .where(components.c.name.in_(names)))} if names else {}
    project_ids = dict(conn.execute(select(projects.c.name, projects.c.id)).all())
    now = utcnow()
    # An agent's clock may run ahead of ours: nothing was started after now.
    found = [replace(f, started_at=now) if f.started_at and f.started_at > now else f for f in found]
    answers, new = [], []
    for f in found:
        if f.native_name in known:
            row = known[f.native_name]
            answers.append({"native_name": f.native_name, "workload_id": row.workload_id, "component_id": row.id})
            continue
        project_id = project_ids.get(f.project or default_project)
        if project_id is None:
            answers.append({"native_name": f.native_name, "workload_id": None, "component_id": None,
                            "reason": f"no project {f.project or default_project!r} to record it in"})
            continue
        new.append((f, project_id))
    if not new:
        return answers
    actor = f"system:agent:{cluster.name}"
    rows = [{
        "project_id": project_id, "cluster_id": cluster.id, "cluster_name": cluster.name, "created_by": actor,
        "created_by_id": None, "name": f"found {f.native_name}"[:128], "type": WorkloadType.CUSTOM.value,
        "priority": 0, "preemptible": False, "gpu": f.gpu, "cpu": f.cpu, "memory": f.memory,
        "ephemeral_storage": f.ephemeral_storage,
        "spec": {"type": "custom", "command": f.command[:4000], "discovered": True, "kind": f.kind},
        "status": WorkloadStatus.RUNNING.value, "status_reason": f"found running on cluster {cluster.name}",
        "status_changed_at": now, "created_at": f.started_at or now, "admitted_at": now,
        "first_running_at": f.started_at or now, "running_since": f.started_at or now, "run_seconds": 0.0,
        "endpoints": {}, "version": 0,
    } for f, project_id in new]
    ids = insert_returning_ids(conn, workloads, rows)
    comp_ids = insert_returning_ids(conn, components, [{
        "workload_id": wid, "kind": f.kind[:32], "name": f.native_name, "status": ComponentStatus.RUNNING.value,
        "reason": "found running (not started by Corral)", "observed_at": now, "placed": True, "gpu": f.gpu,
        "cpu": f.cpu, "memory": f.memory, "ephemeral_storage": f.ephemeral_storage} for wid, (f, _) in zip(ids, new)])
    add_counts(conn, [count_delta(pid, cluster.id, WorkloadType.CUSTOM.value, WorkloadStatus.RUNNING.value, 1)
                      for _, pid in new])
    add_usage(conn, [usage_delta(pid, cluster.id, used=Resources(f.gpu, f.cpu, f.memory, f.ephemeral_storage))
                     for f, pid in new])
    events.record_many(conn, [events.event_row(
        actor=actor, subject_type="workload", subject_id=wid, project_id=pid, kind="discovered",
        message=f"found running on cluster {cluster.name}, not started by Corral: {f.native_name}", at=now)
        for wid, (f, pid) in zip(ids, new)])
    for wid, cid, (f, _) in zip(ids, comp_ids, new):
        answers.append({"native_name": f.native_name, "workload_id": wid, "component_id": cid})
    return answers
