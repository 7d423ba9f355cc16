"""What a cluster's agent should run and remove: the hand-off from admission to the cluster.

The agent asks with the id of the last event it has seen. Events since then that concern
workloads of its cluster (admitted, preempted, deletion requested, its victims gone) name the workloads
whose desired state changed; each is answered with what should be true now (level, not
edge): ``run`` its components, or ``stop`` them, as ``Deleted`` (deletion requested) or
as ``Pending`` (preempted: back in the queue). A poll reads only events newer than the
cursor (the primary key's range), never the cluster's whole workload list. Without a
cursor (an agent starting, or resyncing now and then) the answer is the full desired
state of the cluster, and the agent removes whatever else it runs.

On PostgreSQL an event may commit after one with a larger id; the agent therefore asks
again from a little behind its cursor (``REREAD``) and resyncs in full now and then.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, func, select

from corral.db.tables import components, events, projects, workloads
from corral.domain.statuses import FINISHED_STATUSES, ComponentStatus
from corral.services.keys import SecretKeys as Keys
from corral.services import preemption, service_tokens
from corral.services.secrets import resolve_for_workload

_FINISHED = [s.value for s in FINISHED_STATUSES]
# The events an agent acts on (its work feed reads these; the wake-ups of its held polls
# come only from commits that wrote one: scheduler.wakeup).
AGENT_EVENT_KINDS = ("admitted", "preempted", "delete_requested", "victims_gone")
MAX_ITEMS = 500
REREAD = 200  # events re-read behind the cursor on PostgreSQL (late commits)


def _items(conn: Connection, rows: list[Any], keys: Keys) -> list[dict[str, Any]]:
    """What should be true of each workload now."""
    if not rows:
        return []
    comps: dict[int, list[Any]] = {}
    for c in conn.execute(select(components).where(components.c.workload_id.in_([r.id for r in rows]))
                          .order_by(components.c.id)):
        comps.setdefault(c.workload_id, []).append(c)
    # Admitted by preempting others still on the cluster: not run until they are gone
    # (services.preemption); their last report's event brings it here again.
    held = preemption.held(conn, [r.id for r in rows if r.admitted_at is not None and r.delete_requested_at is None])
    items = []
    for r in rows:
        if (r.spec or {}).get("discovered") or r.status in _FINISHED or r.id in held:
            # Found on the cluster (not started by Corral), or over (its output stays
            # readable on the cluster until it is deleted): nothing to run or stop.
            continue
        mine = comps.get(r.id, [])
        live = [c for c in mine if c.status != ComponentStatus.DELETED.value]
        item: dict[str, Any] = {"workload_id": r.id, "component_ids": [c.id for c in live]}
        if r.delete_requested_at is not None:
            item.update(action="stop", stop_as="Deleted")
        elif r.admitted_at is None:
            item.update(action="stop", stop_as="Pending")  # preempted: back in the queue
        else:
            item.update(action="run", name=r.name, type=r.type, project=r.project_name, spec=r.spec,
                        components=[{"id": c.id, "kind": c.kind, "name": c.name, "gpu": c.gpu, "cpu": c.cpu,
                                     "memory": c.memory, "ephemeral_storage": c.ephemeral_storage,
                                     "status": c.status} for c in live])
            try:
                mapping = (r.spec or {}).get("secrets") or {}
                item["env"] = resolve_for_workload(conn, r.project_id, mapping, keys=keys) if mapping else {}
                if any(c.kind == "server" for c in live):
                    item["env"][service_tokens.ENV] = service_tokens.service_token(keys, r.id)
            except LookupError as exc:  # a secret deleted since submission, or unreadable
                item.update(action="fail", reason=str(exc))
        items.append(item)
    return items


_ROW = (workloads.c.id, workloads.c.name, workloads.c.type, workloads.c.project_id, workloads.c.spec,
        workloads.c.status, workloads.c.admitted_at, workloads.c.delete_requested_at,
        projects.c.name.label("project_name"))


def work_for(conn: Connection, cluster_id: int, after: int | None, postgres: bool, keys: Keys,
             reread: bool = True) -> dict[str, Any]:
    """The agent's next batch: {cursor, full, items}; ``items`` carry the secrets their
    workloads ask for, decrypted (the agent puts them in the environment). Without
    ``reread``, only events after ``after`` count (is there news for a held poll?)."""
    newest = conn.execute(select(func.coalesce(func.max(events.c.id), 0))).scalar_one()
    base = select(*_ROW).join(projects, projects.c.id == workloads.c.project_id)
    if after is None:
        rows = conn.execute(base.where(
            workloads.c.cluster_id == cluster_id, workloads.c.status.not_in(_FINISHED),
            (workloads.c.admitted_at.is_not(None)) | (workloads.c.delete_requested_at.is_not(None)))).all()
        return {"cursor": newest, "full": True, "items": _items(conn, rows, keys)}
    start = max(0, after - REREAD) if postgres and reread else after
    changed = conn.execute(
        select(events.c.id, events.c.subject_id)
        .join(workloads, and_(workloads.c.id == events.c.subject_id, workloads.c.cluster_id == cluster_id))
        # Bounded on both sides: a walk of the primary key whatever the statistics say (an
        # open range was planned as a scan of the whole table before its first ANALYZE).
        .where(events.c.id > start, events.c.id <= newest, events.c.subject_type == "workload",
               events.c.kind.in_(AGENT_EVENT_KINDS))
        .order_by(events.c.id).limit(MAX_ITEMS)).all()
    if len(changed) == MAX_ITEMS:
        newest = changed[-1].id  # more to come: the agent asks again from here
    ids = sorted({r.subject_id for r in changed})
    rows = conn.execute(base.where(workloads.c.id.in_(ids))).all() if ids else []
    return {"cursor": max(newest, after), "full": False, "items": _items(conn, rows, keys)}
