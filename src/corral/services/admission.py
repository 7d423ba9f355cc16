"""One admission pass: read a snapshot, decide (domain.scheduling), write the decisions.

The pass runs in one write transaction that first locks every cluster row, so passes on
several control-plane replicas sharing one PostgreSQL run one after another and each
decides on what the previous one committed: none can admit past a quota or a cluster's
capacity. (On SQLite the write transaction is already exclusive.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select, update

from corral.db.engine import write_tx
from corral.db.tables import clusters, components, projects, quotas, workloads
from corral.domain.resources import RESOURCE_NAMES, Limit, Resources
from corral.domain.scheduling import (
    AdmittedWorkload,
    Decisions,
    ProjectQuota,
    QueuedWorkload,
    Snapshot,
    schedule,
)
from corral.domain.statuses import FINISHED_STATUSES, ComponentStatus, WorkloadStatus
from corral.services import events
from corral.services.clock import utcnow
from corral.services.principal import SYSTEM
from corral.services.status import add_usage, recompute, usage_delta

ADMITTED_REASON = "admitted to cluster {cluster}; waiting for its agent to start it"
_FINISHED = [s.value for s in FINISHED_STATUSES]
_W = (workloads.c.id, workloads.c.project_id, workloads.c.cluster_id, workloads.c.priority,
      workloads.c.preemptible, workloads.c.gpu, workloads.c.cpu, workloads.c.memory,
      workloads.c.ephemeral_storage)


@dataclass(frozen=True)
class PassResult:
    admitted: int
    preempted: int
    waiting: int


def load_snapshot(conn: Connection, now: datetime, starvation_after_s: float) -> tuple[Snapshot, dict[int, Any]]:
    """The snapshot, and the queued workloads' stored reason and cluster name by id."""
    capacity = {
        r.id: Resources(r.capacity_gpu, r.capacity_cpu, r.capacity_memory, r.capacity_ephemeral_storage)
        for r in conn.execute(select(clusters.c.id, clusters.c.capacity_gpu, clusters.c.capacity_cpu,
                                     clusters.c.capacity_memory, clusters.c.capacity_ephemeral_storage))
    }
    quota_map = {
        (r.project_id, r.cluster_id): ProjectQuota(
            Resources(*(getattr(r, f"guaranteed_{n}") for n in RESOURCE_NAMES)),
            Limit(*(getattr(r, f"limit_{n}") for n in RESOURCE_NAMES)))
        for r in conn.execute(select(quotas))
    }
    admitted = [
        AdmittedWorkload(r.id, r.project_id, r.cluster_id, r.priority,
                         Resources(r.gpu, r.cpu, r.memory, r.ephemeral_storage), r.preemptible, r.admitted_at)
        for r in conn.execute(select(*_W, workloads.c.admitted_at).where(
            workloads.c.admitted_at.is_not(None), workloads.c.status.not_in(_FINISHED)))
    ]
    queued_rows = conn.execute(select(*_W, workloads.c.created_at, workloads.c.status_reason,
                                      workloads.c.cluster_name).where(
        workloads.c.status == WorkloadStatus.PENDING.value, workloads.c.admitted_at.is_(None),
        workloads.c.delete_requested_at.is_(None))).all()
    queue = [
        QueuedWorkload(r.id, r.project_id, r.cluster_id, r.priority,
                       Resources(r.gpu, r.cpu, r.memory, r.ephemeral_storage), r.preemptible, r.created_at)
        for r in queued_rows
    ]
    project_rows = conn.execute(select(projects.c.id, projects.c.name, projects.c.preemption_policy)).all()
    snapshot = Snapshot(
        now=now, capacity=capacity, quotas=quota_map, admitted=admitted, queue=queue,
        preemption_policy={r.id: r.preemption_policy for r in project_rows},
        starvation_after_s=starvation_after_s, project_names={r.id: r.name for r in project_rows},
    )
    return snapshot, {r.id: r for r in queued_rows}


def run_pass(engine: Engine, *, starvation_after_s: float = 300.0, actor: str = SYSTEM) -> PassResult:
    with write_tx(engine) as conn:
        # Serialise passes across replicas (PostgreSQL); decide on committed state only.
        conn.execute(select(clusters.c.id).order_by(clusters.c.id).with_for_update()).all()
        now = utcnow()
        snapshot, queued = load_snapshot(conn, now, starvation_after_s)
        decisions = schedule(snapshot)
        apply_decisions(conn, snapshot, decisions, queued, now, actor)
    return PassResult(len(decisions.admissions), len(decisions.preemptions), len(decisions.waiting))


def apply_decisions(conn: Connection, snapshot: Snapshot, decisions: Decisions, queued: dict[int, Any],
                    now: datetime, actor: str) -> None:
    admitted_by_id = {w.id: w for w in snapshot.admitted}
    deltas, event_rows = [], []

    # Preempted: back to the queue first (their capacity was counted free by the decision).
    for p in decisions.preemptions:
        victim = admitted_by_id[p.workload_id]
        conn.execute(update(workloads).where(workloads.c.id == victim.id)
                     .values(admitted_at=None, status_reason=p.reason, version=workloads.c.version + 1))
        # Until cluster agents remove preempted components themselves, they are reset to
        # never-placed Pending ones, as the workload waits again.
        conn.execute(update(components).where(components.c.workload_id == victim.id,
                                               components.c.status != ComponentStatus.DELETED.value)
                     .values(status=ComponentStatus.PENDING.value, reason=p.reason, placed=False, observed_at=now))
        deltas.append(usage_delta(victim.project_id, victim.cluster_id, used=Resources() - victim.request, queued=1))
        event_rows.append(events.event_row(actor=actor, subject_type="workload", subject_id=victim.id,
                                           project_id=victim.project_id, kind="preempted", message=p.reason, at=now))
        recompute(conn, victim.id, now, actor)

    admitted_rows = [queued[a.workload_id] for a in decisions.admissions]
    if admitted_rows:
        reasons = [ADMITTED_REASON.format(cluster=row.cluster_name) for row in admitted_rows]
        # One statement per kind of write, executed for all admissions at once.
        conn.execute(update(workloads).where(workloads.c.id == bindparam("wid"), workloads.c.admitted_at.is_(None))
                     .values(admitted_at=now, status_reason=bindparam("reason"), version=workloads.c.version + 1),
                     [{"wid": row.id, "reason": reason} for row, reason in zip(admitted_rows, reasons)])
        conn.execute(update(components).where(components.c.workload_id == bindparam("wid"),
                                               components.c.status == ComponentStatus.PENDING.value)
                     .values(reason="admitted; waiting for the cluster agent", observed_at=now),
                     [{"wid": row.id} for row in admitted_rows])
        for row, reason in zip(admitted_rows, reasons):
            deltas.append(usage_delta(row.project_id, row.cluster_id,
                                      used=Resources(row.gpu, row.cpu, row.memory, row.ephemeral_storage), queued=-1))
            event_rows.append(events.event_row(actor=actor, subject_type="workload", subject_id=row.id,
                                               project_id=row.project_id, kind="admitted", message=reason, at=now))

    # Why the others wait: written only where the reason changed.
    changed = [{"wid": w.workload_id, "reason": w.reason} for w in decisions.waiting
               if queued[w.workload_id].status_reason != w.reason]
    if changed:
        conn.execute(update(workloads).where(workloads.c.id == bindparam("wid"))
                     .values(status_reason=bindparam("reason")), changed)
    if deltas:
        add_usage(conn, _merged(deltas))
    events.record_many(conn, event_rows)



def _merged(deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One usage delta per (project, cluster)."""
    merged: dict[tuple[int, int], dict[str, Any]] = {}
    for d in deltas:
        key = (d["project_id"], d["cluster_id"])
        if key in merged:
            for column in ("gpu", "cpu", "memory", "ephemeral_storage", "queued"):
                merged[key][column] += d[column]
        else:
            merged[key] = dict(d)
    return list(merged.values())
