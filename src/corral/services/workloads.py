"""Workloads: submit, read, delete, stats. Listing lives in ``listing``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Connection, and_, func, or_, select

from corral.db.dialect import Rows, draw_ids, write_together
from corral.db.tables import clusters, components, projects, quotas, workload_counts, workloads
from corral.db.tables import events as events_table
from corral.domain.clusters import ClusterHealth, cluster_health
from corral.domain.deletion import delete_refusal
from corral.domain.durations import format_duration
from corral.domain.resources import Resources, format_quantity
from corral.domain.results import merged_metrics
from corral.domain.statuses import ComponentState, ComponentStatus, WorkloadStatus, aggregate_status, elapsed_times
from corral.domain.workloads import (
    ComponentPlan,
    WorkloadSpec,
    WorkloadType,
    error_field,
    is_preemptible,
    placement_units,
    plan_components,
)
from corral.services import clusters as cluster_service, events, projects as project_service
from corral.services import secrets as secret_service
from corral.services.bulk_delete import queue_deletion
from corral.services.clock import utcnow
from corral.services.errors import ClusterUnavailable, Conflict, InvalidInput, NotFound
from corral.services.principal import Principal
from corral.services.quotas import limit_of
from corral.services.status import (
    STATE_COLUMNS,
    add_usage,
    counts_write,
    usage_delta,
    clock_of,
    count_delta,
    lock_workload,
)

_SPEC = TypeAdapter(WorkloadSpec)
QUEUED_REASON = "queued: waiting for admission on cluster {cluster}"
QUEUED_ANYWHERE_REASON = "queued: waiting for admission on a cluster of its project where it fits"


def parse_spec(body: Any) -> Any:
    """Validate a submission body into its typed spec; the type may be given by its label."""
    if isinstance(body, dict) and isinstance(body.get("type"), str):
        try:
            body = {**body, "type": WorkloadType.parse(body["type"]).value}
        except ValueError as exc:
            raise InvalidInput(str(exc), field="type") from None
    try:
        return _SPEC.validate_python(body)
    except ValidationError as exc:
        raise _invalid_from(exc) from None


def _invalid_from(exc: ValidationError) -> InvalidInput:
    first = exc.errors()[0]
    # Drop the discriminator's tag ("fine_tuning") from the path the user sees.
    field = error_field(first)
    message = first["msg"].removeprefix("Value error, ")
    error = InvalidInput(f"{field}: {message}" if field else message, field=field)
    error.details = [  # type: ignore[attr-defined]
        {"field": error_field(e),
         "message": e["msg"].removeprefix("Value error, ")}
        for e in exc.errors()
    ]
    return error


@dataclass(frozen=True, slots=True)
class PreparedSubmission:
    """A validated submission, ready to write: everything resolved and checked."""

    project_id: int
    project_name: str
    cluster_id: int
    cluster_name: str
    created_by: str
    created_by_id: int
    name: str
    type: str
    priority: int
    preemptible: bool
    request: Resources
    spec: dict[str, Any]
    components: tuple[ComponentPlan, ...]
    # False: the user named no cluster; ``cluster_id`` is only tentative, and admission
    # places it where it fits (quotas.md, "Placement").
    cluster_named: bool = True
    units: int = 1  # how the request is split over the cluster's nodes (domain.workloads.placement_units)
    spread: bool = False


# A project with its clusters and quotas: a row per quota (one with no cluster if none).
_PROJECT_CANDIDATES = (
    select(projects.c.id.label("project_id"), projects.c.name.label("project_name"),
           clusters.c.id, clusters.c.name, clusters.c.last_heartbeat_at,
           *(quotas.c[f"guaranteed_{n}"] for n in ("gpu", "cpu", "memory", "ephemeral_storage")),
           *(quotas.c[f"limit_{n}"] for n in ("gpu", "cpu", "memory", "ephemeral_storage")),
           quotas.c.id.label("quota_id"))
    .select_from(projects.outerjoin(quotas, quotas.c.project_id == projects.c.id)
                 .outerjoin(clusters, clusters.c.id == quotas.c.cluster_id))
    .order_by(clusters.c.name)
)


class SubmissionLookups:
    """What several submissions checked in one transaction share (a group commit's batch):
    each caller's project by name with its clusters and quotas, read once, in one query."""

    def __init__(self) -> None:
        self._projects: dict[tuple[int, str, str], dict[str, Any]] = {}

    def project(self, conn: Connection, principal: Principal, name: str) -> dict[str, Any]:
        """The project if the caller may see it: its id, name and ``candidates`` (the
        clusters where it has a quota, each row with the quota, by cluster name)."""
        key = (principal.user_id, principal.role, name)
        found = self._projects.get(key)
        if found is None:
            rows = conn.execute(_PROJECT_CANDIDATES.where(*project_service.named_and_visible(principal, name))).all()
            if not rows:
                raise project_service.not_found(name)
            found = self._projects[key] = {"id": rows[0].project_id, "name": rows[0].project_name,
                                           "candidates": [r for r in rows if r.quota_id is not None]}
        return found


def prepare_submission(
    conn: Connection, principal: Principal, spec: Any, *, unhealthy_after_s: float,
    lookups: SubmissionLookups | None = None,
) -> PreparedSubmission:
    """Check a submission against visibility, quota and cluster health; write nothing."""
    lookups = lookups or SubmissionLookups()
    project = lookups.project(conn, principal, spec.project)
    # --- project secrets: every secret the spec maps to an environment variable must exist
    # in the project (422, field secrets.<ENV>); the values are resolved at dispatch.
    if spec.secrets:
        secret_service.check_references(conn, project["id"], spec.secrets, project["name"])
    # --- end project secrets
    plans = tuple(plan_components(spec))
    units, spread = placement_units(spec)
    request = Resources.total([p.requests for p in plans])
    candidates = project["candidates"]
    if spec.cluster is not None:
        chosen = [c for c in candidates if c.name == spec.cluster]
        if not chosen:
            # A cluster the caller may not see answers as if it did not exist (404), so
            # that names of other teams' clusters cannot be confirmed by trying them.
            cluster_service.get_cluster(conn, principal, spec.cluster, unhealthy_after_s)
            raise InvalidInput(f"project {project['name']} has no quota on cluster {spec.cluster}",
                               field="cluster", code="no_quota")
        candidates = chosen
    elif not candidates:
        raise InvalidInput(f"project {project['name']} has no quota on any cluster; ask an administrator for one",
                           field="cluster", code="no_quota")
    # The request alone must fit the project's limit on the cluster (quotas.md).
    fitting = [c for c in candidates if limit_of(c).admits(request)]
    if not fitting:
        c = candidates[0]
        over = limit_of(c).exceeded_dimensions(request)
        details = ", ".join(f"{n} {format_quantity(n, getattr(request, n))} > limit "
                            f"{format_quantity(n, getattr(limit_of(c), n))}" for n in over)
        where = f"on cluster {c.name}" if len(candidates) == 1 else "on any of its clusters"
        raise InvalidInput(f"the request exceeds the quota limit of project {project['name']} {where} ({details})",
                           field="resources", code="exceeds_quota_limit")
    now = utcnow()
    healthy = [c for c in fitting
               if cluster_health(c.last_heartbeat_at, now, unhealthy_after_s) is not ClusterHealth.UNHEALTHY]
    if not healthy:
        names = ", ".join(c.name for c in fitting)
        raise ClusterUnavailable(f"cluster {names} is unhealthy (its agent has been silent for over "
                                 f"{unhealthy_after_s:.0f}s); try again when it reports back", field="cluster")
    # Without a named cluster: tentatively the first by name where the request fits the
    # limit and whose agent is heard from; admission places it where it fits then.
    cluster = next((c for c in healthy if cluster_health(c.last_heartbeat_at, now, unhealthy_after_s)
                    is ClusterHealth.HEALTHY), healthy[0])
    return PreparedSubmission(
        project_id=project["id"], project_name=project["name"], cluster_id=cluster.id, cluster_name=cluster.name,
        created_by=principal.email, created_by_id=principal.user_id, name=spec.name, type=spec.type.value,
        priority=spec.priority.value_int, preemptible=is_preemptible(spec), request=request,
        spec=spec.model_dump(mode="json", exclude_none=True), components=plans,
        cluster_named=spec.cluster is not None, units=units, spread=spread,
    )


def write_submissions(conn: Connection, items: list[PreparedSubmission]) -> list[dict[str, Any]]:
    """Write prepared submissions in one transaction: workloads, components, counts, events.

    Their components are registered at once (Pending), so a workload is never left Added.
    """
    now = utcnow()
    rows = []
    for item in items:
        status, _ = aggregate_status([_pending(p) for p in item.components], False)
        rows.append({
            "project_id": item.project_id, "cluster_id": item.cluster_id, "cluster_name": item.cluster_name,
            "created_by": item.created_by, "created_by_id": item.created_by_id, "name": item.name,
            "type": item.type, "priority": item.priority, "preemptible": item.preemptible,
            **item.request.as_dict(), "spec": item.spec, "status": status.value,
            "status_reason": (QUEUED_REASON.format(cluster=item.cluster_name) if item.cluster_named
                              else QUEUED_ANYWHERE_REASON), "status_changed_at": now,
            "cluster_named": item.cluster_named, "units": item.units, "spread": item.spread,
            "created_at": now, "run_seconds": 0.0, "endpoints": {}, "version": 0,
        })
    ids, workload_rows = draw_ids(conn, workloads, rows)
    component_rows, event_rows, deltas = [], [], []
    for workload_id, item, row in zip(ids, items, rows):
        for plan in item.components:
            component_rows.append({
                "workload_id": workload_id, "kind": plan.kind, "name": f"wl-{workload_id}-{plan.kind}",
                "status": ComponentStatus.PENDING.value, "reason": "waiting for admission", "observed_at": now,
                "placed": False, **plan.requests.as_dict(),
            })
        event_rows.append(events.event_row(
            actor=item.created_by, subject_type="workload", subject_id=workload_id, project_id=item.project_id,
            kind="submitted", message=f"{WorkloadType(item.type).label} workload {item.name!r} submitted to "
                                      f"cluster {item.cluster_name}; {row['status']}", at=now))
        deltas.append(count_delta(item.project_id, item.cluster_id, item.type, row["status"], +1))
    # The new rows in one statement (PostgreSQL), then the counts, then the usage: every
    # writer locks counts before usage rows.
    write_together(conn, workload_rows, Rows(components, component_rows), Rows(events_table, event_rows),
                   counts_write(deltas))
    queued: dict[tuple[int, int], int] = {}
    for item in items:
        queued[(item.project_id, item.cluster_id)] = queued.get((item.project_id, item.cluster_id), 0) + 1
    add_usage(conn, [usage_delta(project_id, cluster_id, queued=n) for (project_id, cluster_id), n in
                     sorted(queued.items())])
    return [
        {"id": workload_id, "name": item.name, "type": item.type, "project": item.project_name,
         "cluster": item.cluster_name, "status": row["status"], "status_reason": row["status_reason"],
         "created_by": item.created_by, "created_at": now, "resources": item.request.as_dict()}
        for workload_id, item, row in zip(ids, items, rows)
    ]


def _pending(plan: ComponentPlan) -> ComponentState:
    return ComponentState(ComponentStatus.PENDING, "waiting for admission")


# ----------------------------------------------------------------------------- reads

_DETAIL_COLUMNS = (
    *STATE_COLUMNS, workloads.c.name, workloads.c.cluster_name, workloads.c.created_by, workloads.c.priority,
    workloads.c.preemptible, workloads.c.spec, workloads.c.status_changed_at, workloads.c.endpoints,
    projects.c.name.label("project_name"),
)


def visible_workload(conn: Connection, principal: Principal, workload_id: int) -> Any:
    query = (select(*_DETAIL_COLUMNS).join(projects, projects.c.id == workloads.c.project_id)
             .where(workloads.c.id == workload_id, *project_service.visible_to(conn, principal, workloads.c.project_id)))
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"workload {workload_id} not found")
    return row


PRIORITY_NAMES = {-100: "low", 0: "medium", 100: "high"}


def get_workload(conn: Connection, principal: Principal, workload_id: int) -> dict[str, Any]:
    """Everything about one workload: who and when, components, events, queue and run time."""
    row = visible_workload(conn, principal, workload_id)
    now = utcnow()
    waiting, running = elapsed_times(clock_of(row), now)
    comps = conn.execute(
        select(components.c.id, components.c.kind, components.c.name, components.c.status, components.c.reason,
               components.c.observed_at, components.c.gpu, components.c.cpu, components.c.memory,
               components.c.ephemeral_storage, components.c.result)
        .where(components.c.workload_id == workload_id).order_by(components.c.id)
    ).all()
    return {
        "id": row.id,
        "name": row.name,
        "type": row.type,
        "type_label": WorkloadType(row.type).label,
        "project": row.project_name,
        "cluster": row.cluster_name,
        "status": row.status,
        "status_label": WorkloadStatus(row.status).label,
        "status_reason": row.status_reason,
        "status_changed_at": row.status_changed_at,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "priority": PRIORITY_NAMES.get(row.priority, str(row.priority)),
        "preemptible": row.preemptible,
        "resources": {"gpu": row.gpu, "cpu": row.cpu, "memory": row.memory,
                      "ephemeral_storage": row.ephemeral_storage},
        "spec": row.spec,
        "time_limit": format_duration(row.spec["time_limit"]) if (row.spec or {}).get("time_limit") else None,
        "endpoints": row.endpoints,
        "delete_requested_at": row.delete_requested_at,
        "admitted_at": row.admitted_at,
        "first_running_at": row.first_running_at,
        "finished_at": row.finished_at,
        "wait_seconds": round(waiting, 3),
        "run_seconds": round(running, 3),
        "queue_position": _queue_position(conn, row),
        "components": [
            {"id": c.id, "kind": c.kind, "name": c.name, "status": c.status, "reason": c.reason,
             "observed_at": c.observed_at,
             "resources": {"gpu": c.gpu, "cpu": c.cpu, "memory": c.memory, "ephemeral_storage": c.ephemeral_storage},
             "result": c.result}
            for c in comps
        ],
        "metrics": merged_metrics(c.result for c in comps)[0],
        "events": events.list_for_subject(conn, "workload", workload_id),
    }


def _queue_position(conn: Connection, row: Any) -> dict[str, int] | None:
    """1-based place in the project's queue on its cluster (priority, then submission time)."""
    if row.status != WorkloadStatus.PENDING.value or row.admitted_at is not None or row.delete_requested_at:
        return None
    queued = and_(workloads.c.project_id == row.project_id, workloads.c.status == WorkloadStatus.PENDING.value,
                  workloads.c.cluster_id == row.cluster_id, workloads.c.admitted_at.is_(None),
                  workloads.c.delete_requested_at.is_(None))
    ahead = or_(workloads.c.priority > row.priority,
                and_(workloads.c.priority == row.priority,
                     or_(workloads.c.created_at < row.created_at,
                         and_(workloads.c.created_at == row.created_at, workloads.c.id < row.id))))
    position, total = conn.execute(
        select(func.count().filter(ahead), func.count()).where(queued)
    ).one()
    return {"position": position + 1, "of": total}


def stats(conn: Connection, principal: Principal, project_name: str) -> dict[str, Any]:
    """Workloads per status and per type in a project, from the kept counts."""
    project = project_service.resolve(conn, principal, project_name)
    rows = conn.execute(
        select(workload_counts.c.status, workload_counts.c.type, func.sum(workload_counts.c.count))
        .where(workload_counts.c.project_id == project["id"])
        .group_by(workload_counts.c.status, workload_counts.c.type)
    ).all()
    by_status = {s.value: 0 for s in WorkloadStatus}
    by_type = {t.value: 0 for t in WorkloadType}
    for status, type_, n in rows:
        by_status[status] += int(n)
        by_type[type_] += int(n)
    return {"project": project["name"], "total": sum(by_status.values()), "by_status": by_status, "by_type": by_type}


# ----------------------------------------------------------------------------- delete

def request_delete(conn: Connection, principal: Principal, workload_id: int) -> dict[str, Any]:
    """Queue a workload for deletion (seed: "Queues the workload for deletion").

    Components never created on a cluster are Deleted at once; the rest are removed by
    the cluster's agent, which reports them Deleted. A Delete Failed workload may be
    deleted again: its failed components are retried.
    """
    visible_workload(conn, principal, workload_id)
    row = lock_workload(conn, workload_id)
    refusal = delete_refusal(workload_id, WorkloadStatus(row.status), row.delete_requested_at is not None)
    if refusal is not None:
        raise Conflict(refusal.message, code=refusal.code)
    queue_deletion(conn, [row], utcnow(), principal.email)
    return get_workload(conn, principal, workload_id)
