"""Deleting many workloads at once (by ids or by a filter), with a dry run.

Each workload gets the single delete's answer, as a result instead of an error: ``done``
(queued for deletion), ``already_deleting``, ``already_deleted`` (the state rule of
``domain.deletion``, the 409s of a single delete), or ``not_found`` (missing, or in a
project the caller cannot see: its name and project are not told, as a single delete's
404 tells nothing). Project members manage every workload of their projects, so nothing
they can see is refused to them.

The work is set-based whatever the number of workloads: one SELECT that reads and locks
them (in id order, as every writer locks workloads), then ``queue_deletion``'s few
statements, which the single delete uses too. The agents learn of the deletions from
the ``delete_requested`` events, as for a single delete, in their next poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, false, select, update

from corral.db.tables import components, projects, workloads
from corral.domain.deletion import delete_refusal
from corral.domain.statuses import (
    ComponentState,
    ComponentStatus,
    WorkloadStatus,
    aggregate_status,
)
from corral.services import events, listing, projects as project_service
from corral.services.clock import utcnow
from corral.services.errors import InvalidInput
from corral.services.principal import Principal
from corral.services.status import STATE_COLUMNS, write_statuses

MAX_ITEMS = 10_000  # ids in one request, and workloads one filter may match
MAX_ID = 2**63 - 1
RESULTS = ("done", "already_deleting", "already_deleted", "not_found")


@dataclass
class BulkFilter:
    """The list endpoint's filters. Without statuses: every status but Deleted (as the list)."""

    project: str | None = None
    statuses: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    name: str | None = None
    cluster: str | None = None
    created_by: str | None = None

    def is_empty(self) -> bool:
        return not (self.project or self.statuses or self.types or self.name or self.cluster or self.created_by)


_TARGET_COLUMNS = (*STATE_COLUMNS, workloads.c.name, projects.c.name.label("project_name"))


def delete_many(conn: Connection, principal: Principal, *, ids: Sequence[int] | None = None,
                filter: BulkFilter | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Queue the workloads named by ``ids`` or matched by ``filter`` for deletion (or, with
    ``dry_run``, say what would happen and change nothing): ``{dry_run, items, counts}``.

    Run it in one write transaction: the rows are locked from the read that classifies
    them to the writes."""
    if (ids is None) == (filter is None):
        raise InvalidInput("give either ids or a filter", field="ids")
    query = select(*_TARGET_COLUMNS).join(projects, projects.c.id == workloads.c.project_id)
    if ids is not None:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            raise InvalidInput("ids: give at least one workload id", field="ids")
        if len(wanted) > MAX_ITEMS:
            raise InvalidInput(f"ids: at most {MAX_ITEMS} workloads in one request (got {len(wanted)})", field="ids")
        if not all(1 <= i <= MAX_ID for i in wanted):
            raise InvalidInput(f"ids: a workload id is between 1 and {MAX_ID}", field="ids")
        query = query.where(workloads.c.id.in_(wanted))
    else:
        assert filter is not None
        query = query.where(*_filter_conditions(conn, principal, filter))
    query = query.where(*project_service.visible_to(conn, principal, workloads.c.project_id)).order_by(workloads.c.id)
    if ids is None:
        query = query.limit(MAX_ITEMS + 1)
    if not dry_run:
        query = query.with_for_update(of=workloads)
    rows = conn.execute(query).all()
    if ids is None and len(rows) > MAX_ITEMS:
        raise InvalidInput(f"the filter matches more than {MAX_ITEMS} workloads; narrow it (by project, status, "
                           "type, name, cluster or creator)", field="filter", code="too_many")

    found = {r.id: r for r in rows}
    items, to_delete = [], []
    for workload_id in (wanted if ids is not None else list(found)):
        row = found.get(workload_id)
        if row is None:
            items.append({"id": workload_id, "name": None, "project": None, "status": None,
                          "result": "not_found", "message": f"workload {workload_id} not found"})
            continue
        refusal = delete_refusal(row.id, WorkloadStatus(row.status), row.delete_requested_at is not None)
        item = {"id": row.id, "name": row.name, "project": row.project_name, "status": row.status}
        if refusal is not None:
            items.append({**item, "result": refusal.code, "message": refusal.message})
        else:
            items.append({**item, "result": "done",
                          "message": "would be queued for deletion" if dry_run else "queued for deletion"})
            to_delete.append(row)
    if to_delete and not dry_run:
        after = queue_deletion(conn, to_delete, utcnow(), principal.email)
        for item in items:
            if item["id"] in after:
                item["status"] = after[item["id"]]
    counts = dict.fromkeys(RESULTS, 0)
    for item in items:
        counts[item["result"]] += 1
    return {"dry_run": dry_run, "items": items, "counts": counts}


def _filter_conditions(conn: Connection, principal: Principal, f: BulkFilter) -> list[Any]:
    """What the list shows for the same filters (``listing.filter_conditions``): a dry run
    and the Workloads page's "delete all matching" name the same workloads."""
    if f.is_empty():
        raise InvalidInput("the filter names no criterion: give at least one of project, status, type, name, "
                           "cluster, created_by", field="filter", code="empty_filter")
    query = listing.WorkloadQuery(project=f.project, name=f.name, types=f.types, statuses=f.statuses,
                                  cluster=f.cluster, created_by=f.created_by)
    try:
        conditions = listing.filter_conditions(conn, principal, query)
    except InvalidInput as exc:
        exc.field = f"filter.{exc.field}" if exc.field else "filter"
        raise
    return [false()] if conditions is None else conditions


def queue_deletion(conn: Connection, rows: Sequence[Any], at: datetime, actor: str) -> dict[int, str]:
    """Queue these workloads (rows with STATE_COLUMNS, locked, that ``delete_refusal``
    allows) for deletion in a few statements whatever their number; their new statuses.

    Components never created on a cluster are Deleted at once; the rest are removed by the
    cluster's agent, which reports them Deleted. A Delete Failed workload's failed
    components are retried.
    """
    ids = [r.id for r in rows]
    conn.execute(update(workloads).where(workloads.c.id.in_(ids)).values(delete_requested_at=at))
    conn.execute(
        update(components)
        .where(components.c.workload_id.in_(ids), components.c.placed.is_(False),
               components.c.status != ComponentStatus.DELETED.value)
        .values(status=ComponentStatus.DELETED.value, reason="never created on the cluster", observed_at=at)
    )
    conn.execute(
        update(components)
        .where(components.c.workload_id.in_(ids), components.c.status == ComponentStatus.DELETE_FAILED.value)
        .values(status=ComponentStatus.UNKNOWN.value, reason="deletion retried", observed_at=at)
    )
    events.record_many(conn, [
        events.event_row(actor=actor, subject_type="workload", subject_id=r.id, project_id=r.project_id,
                         kind="delete_requested", at=at,
                         message="deletion retried" if r.status == WorkloadStatus.DELETE_FAILED.value
                         else "deletion requested")
        for r in rows])
    states: dict[int, list[ComponentState]] = {i: [] for i in ids}
    for c in conn.execute(select(components.c.workload_id, components.c.status, components.c.reason)
                          .where(components.c.workload_id.in_(ids)).order_by(components.c.id)):
        states[c.workload_id].append(ComponentState(ComponentStatus(c.status), c.reason))
    moves = [(r, *aggregate_status(states[r.id], True)) for r in rows]
    write_statuses(conn, moves, at, actor)
    return {r.id: status.value for r, status, _ in moves}
