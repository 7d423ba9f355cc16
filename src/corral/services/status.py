"""The one writer of workload status.

Every change of a workload's status goes through ``write_statuses``: it derives the new
clock, writes the rows guarded by their version, keeps the per-status counts and the
project's usage right, and appends the events, all in the caller's transaction.

Every writer locks kept counts, then usage, each once and in key order: a transaction
that wrote usage before counts, or counts twice, could deadlock with another (``Tallies``
gathers a transaction's deltas to write them so).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from corral.db.dialect import AddTo, id_in, upsert_add, write_together
from corral.db.engine import is_sqlite
from corral.db.tables import components, project_usage, workload_counts, workloads
from corral.db.tables import events as event_log
from corral.domain.resources import Resources
from corral.domain.statuses import (
    FINISHED_STATUSES,
    ComponentState,
    ComponentStatus,
    WorkloadClock,
    WorkloadStatus,
    advance_clock,
    aggregate_status,
    component_update_allowed,
    is_stale,
)
from corral.services import events
from corral.services import models as model_service
from corral.services.clock import utcnow
from corral.services.errors import Conflict
from corral.services.preemption import release_preemptors

# The columns the writer needs to know about a workload.
STATE_COLUMNS = (
    workloads.c.id, workloads.c.project_id, workloads.c.cluster_id, workloads.c.type, workloads.c.status,
    workloads.c.status_reason, workloads.c.version, workloads.c.created_at, workloads.c.first_running_at,
    workloads.c.running_since, workloads.c.run_seconds, workloads.c.finished_at, workloads.c.admitted_at,
    workloads.c.delete_requested_at, workloads.c.gpu, workloads.c.cpu, workloads.c.memory,
    workloads.c.ephemeral_storage,
)


def clock_of(row: Any) -> WorkloadClock:
    return WorkloadClock(
        created_at=row.created_at, first_running_at=row.first_running_at, running_since=row.running_since,
        run_seconds=row.run_seconds, finished_at=row.finished_at,
    )


def request_of(row: Any) -> Resources:
    return Resources(row.gpu, row.cpu, row.memory, row.ephemeral_storage)


def count_delta(project_id: int, cluster_id: int, type_: str, status: str, delta: int) -> dict[str, Any]:
    return {"project_id": project_id, "cluster_id": cluster_id, "type": type_, "status": status, "count": delta}


def add_counts(conn: Connection, deltas: list[dict[str, Any]]) -> None:
    """Apply count deltas, merged per key and in key order (no lock-order deadlocks)."""
    write_together(conn, counts_write(deltas))


def counts_write(deltas: list[dict[str, Any]]) -> AddTo:
    """Count deltas as one write (dialect.write_together), merged per key and in key order."""
    merged: dict[tuple[int, int, str, str], int] = {}
    for d in deltas:
        key = (d["project_id"], d["cluster_id"], d["type"], d["status"])
        merged[key] = merged.get(key, 0) + d["count"]
    rows = [count_delta(*key, n) for key, n in sorted(merged.items()) if n]
    return AddTo(workload_counts, ("project_id", "cluster_id", "type", "status"), ("count",), rows)


_USAGE_COLUMNS = ("gpu", "cpu", "memory", "ephemeral_storage", "queued")


def usage_delta(project_id: int, cluster_id: int, *, used: Resources | None = None, queued: int = 0
                ) -> dict[str, Any]:
    """A change to what a project holds on a cluster (``used``) and to its number queued there."""
    return {"project_id": project_id, "cluster_id": cluster_id, **(used or Resources()).as_dict(), "queued": queued}


def add_usage(conn: Connection, deltas: list[dict[str, Any]]) -> None:
    """Apply usage deltas, in key order (no lock-order deadlocks between writers)."""
    rows = sorted(deltas, key=lambda d: (d["project_id"], d["cluster_id"]))
    upsert_add(conn, project_usage, ("project_id", "cluster_id"), _USAGE_COLUMNS, rows)


@dataclass(slots=True)
class Tallies:
    """Count and usage deltas gathered through a transaction and written once at its end,
    counts first: the lock order of every writer."""
    counts: list[dict[str, Any]] = field(default_factory=list)
    usage: list[dict[str, Any]] = field(default_factory=list)

    def write(self, conn: Connection) -> None:
        if self.counts:
            add_counts(conn, self.counts)
        if self.usage:
            add_usage(conn, _merged_usage(self.usage))
        self.counts, self.usage = [], []


@dataclass(frozen=True, slots=True)
class StatusChange:
    workload_id: int
    old: WorkloadStatus
    new: WorkloadStatus


# A move: (row with STATE_COLUMNS, new status, reason), or with its own time last.
Move = tuple[Any, WorkloadStatus, str] | tuple[Any, WorkloadStatus, str, datetime]


def write_statuses(conn: Connection, moves: Sequence[Move], at: datetime, actor: str, *,
                   tallies: Tallies | None = None) -> list[StatusChange]:
    """Move many workloads in a few statements whatever their number: one UPDATE run with
    every row's values, one upsert of the counts, one of the usage, one INSERT of the
    events. A move without a time of its own happened at ``at``. With ``tallies`` the
    counts and usage are left there for the caller to write. Returns what changed."""
    reasons, values, changes, rows_events = [], [], [], []
    own = tallies is None
    tallies = Tallies() if tallies is None else tallies
    deltas, usage = tallies.counts, tallies.usage
    for move in moves:
        row, new_status, reason = move[0], move[1], move[2]
        when = move[3] if len(move) > 3 else at
        old_status = WorkloadStatus(row.status)
        if old_status is new_status:
            if reason != row.status_reason:
                reasons.append({"b_id": row.id, "b_reason": reason})
            continue
        if old_status is WorkloadStatus.DELETED:
            raise Conflict(f"workload {row.id} is Deleted; its status cannot change", code="already_deleted")
        clock = advance_clock(clock_of(row), new_status, when)
        values.append({
            "b_id": row.id, "b_version": row.version, "b_status": new_status.value, "b_reason": reason, "b_at": when,
            "b_next": row.version + 1, "b_first": clock.first_running_at, "b_since": clock.running_since,
            "b_run": clock.run_seconds, "b_finished": clock.finished_at,
        })
        deltas += [count_delta(row.project_id, row.cluster_id, row.type, old_status.value, -1),
                   count_delta(row.project_id, row.cluster_id, row.type, new_status.value, +1)]
        if new_status in FINISHED_STATUSES and old_status not in FINISHED_STATUSES:
            # Finished: release what it held, or leave the queue if it never ran.
            if row.admitted_at is not None:
                usage.append(usage_delta(row.project_id, row.cluster_id, used=Resources() - request_of(row)))
            else:
                usage.append(usage_delta(row.project_id, row.cluster_id, queued=-1))
        message = f"{old_status.label} -> {new_status.label}" + (f": {reason}" if reason else "")
        rows_events.append(events.event_row(actor=actor, subject_type="workload", subject_id=row.id,
                                            project_id=row.project_id, kind="status_changed", message=message,
                                            at=when))
        changes.append(StatusChange(row.id, old_status, new_status))
    if reasons:
        conn.execute(update(workloads).where(workloads.c.id == bindparam("b_id"))
                     .values(status_reason=bindparam("b_reason")), reasons)
    if values:
        result = conn.execute(
            update(workloads)
            .where(workloads.c.id == bindparam("b_id"), workloads.c.version == bindparam("b_version"))
            .values(status=bindparam("b_status"), status_reason=bindparam("b_reason"),
                    status_changed_at=bindparam("b_at"),
                    version=bindparam("b_next"), first_running_at=bindparam("b_first"),
                    running_since=bindparam("b_since"), run_seconds=bindparam("b_run"),
                    finished_at=bindparam("b_finished")),
            values,
        )
        sane = conn.dialect.supports_sane_rowcount if len(values) == 1 else conn.dialect.supports_sane_multi_rowcount
        if sane and result.rowcount != len(values):
            which = values[0]["b_id"] if len(values) == 1 else "a workload"
            raise Conflict(f"workload {which} changed concurrently; try again" if len(values) == 1
                           else "a workload changed concurrently; try again", code="concurrent_update")
        if own:
            tallies.write(conn)
        events.record_many(conn, rows_events)
    return changes


def _merged_usage(deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: dict[tuple[int, int], dict[str, Any]] = {}
    for d in deltas:
        key = (d["project_id"], d["cluster_id"])
        if key in merged:
            for column in _USAGE_COLUMNS:
                merged[key][column] += d[column]
        else:
            merged[key] = dict(d)
    return list(merged.values())


def lock_workload(conn: Connection, workload_id: int) -> Any | None:
    """The workload's state, locked against concurrent writers until the transaction ends."""
    return conn.execute(select(*STATE_COLUMNS).where(workloads.c.id == workload_id).with_for_update()).first()


def lock_workloads(conn: Connection, ids: Any) -> dict[int, Any]:
    """The state of the workloads whose id is in ``ids`` (a list or a subquery), locked in
    id order (the order of every writer), by id."""
    where = id_in(workloads.c.id, ids, not is_sqlite(conn)) if isinstance(ids, list) else workloads.c.id.in_(ids)
    return {r.id: r for r in conn.execute(select(*STATE_COLUMNS).where(where)
                                          .order_by(workloads.c.id).with_for_update())}


def recompute(conn: Connection, times: Mapping[int, datetime], actor: str, *,
              locked: Mapping[int, Any] | None = None, tallies: Tallies | None = None) -> list[StatusChange]:
    """Derive these workloads' statuses from their components again and write those that
    changed, each at its time in ``times`` (workload id -> time), in one write.
    ``locked``: rows (STATE_COLUMNS) the caller locked and read in this transaction; the
    others are locked here, in id order. ``tallies`` as for write_statuses."""
    ids = sorted(times)
    rows = dict(locked or {})
    missing = [i for i in ids if i not in rows]
    if missing:
        rows.update(lock_workloads(conn, missing))
    states: dict[int, list[ComponentState]] = {}
    for r in conn.execute(select(components.c.workload_id, components.c.status, components.c.reason)
                          .where(id_in(components.c.workload_id, ids, not is_sqlite(conn)))
                          .order_by(components.c.workload_id, components.c.id)):
        states.setdefault(r.workload_id, []).append(ComponentState(ComponentStatus(r.status), r.reason))
    moves: list[Move] = []
    for i in ids:
        row = rows.get(i)
        if row is None or WorkloadStatus(row.status) is WorkloadStatus.DELETED:
            continue
        status, reason = aggregate_status(states.get(i, []), row.delete_requested_at is not None)
        moves.append((row, status, reason, times[i]))
    return write_statuses(conn, moves, min(times.values()), actor, tallies=tallies) if moves else []


@dataclass(frozen=True, slots=True)
class ComponentUpdate:
    component_id: int
    status: ComponentStatus
    reason: str
    observed_at: datetime
    native_name: str | None = None
    endpoint_url: str | None = None  # where a ready service answers (reachable from the control plane)
    removed: bool = False  # gone from the cluster after a preemption: no longer placed
    result: dict[str, Any] | None = None  # what a finished component left (domain/results.py), checked


def apply_component_updates(
    conn: Connection, updates: list[ComponentUpdate], actor: str, *, cluster_id: int | None = None
) -> dict[str, int]:
    """Record what a cluster reports about components; stale and foreign updates are ignored.

    ``cluster_id`` restricts the updates to that cluster's components (an agent reports
    only its own). Returns counts of applied and ignored updates.
    """
    if not updates:
        return {"applied": 0, "ignored": 0}
    # An agent's clock may run ahead of ours: a report dated in the future would make every
    # later one look older (stale) and wedge the component. Nothing is observed after now.
    now = utcnow()
    updates = [replace(u, observed_at=now) if u.observed_at > now else u for u in updates]
    ids = sorted({u.component_id for u in updates})
    query = (
        select(components.c.id, components.c.workload_id, components.c.kind, components.c.status,
               components.c.observed_at, workloads.c.preempted_for)
        .join(workloads, workloads.c.id == components.c.workload_id)
        .where(components.c.id.in_(ids))
    )
    if cluster_id is not None:
        query = query.where(workloads.c.cluster_id == cluster_id)
    # Lock their workloads first, in id order, as every writer of workloads does (request
    # handlers and the scheduler): rows are always locked workloads, then components.
    # Their state, read with the lock: the status is derived from it below (nothing here
    # writes those columns before), one statement less on the path from an exit to its status.
    owners = select(components.c.workload_id).where(components.c.id.in_(ids))
    locked = lock_workloads(conn, owners)
    current = {r.id: r for r in conn.execute(query)}
    latest: dict[int, ComponentUpdate] = {}
    for u in updates:
        if u.component_id in current and (
            u.component_id not in latest or u.observed_at >= latest[u.component_id].observed_at
        ):
            latest[u.component_id] = u
    applied, touched = 0, {}
    endpoints: dict[int, dict[str, str]] = {}
    made: list[tuple[int, dict[str, Any]]] = []
    for cid, u in sorted(latest.items()):
        row = current[cid]
        # A future time stored before reports were clamped is no reason to ignore this one.
        stored = row.observed_at if row.observed_at is None or row.observed_at <= now else None
        if is_stale(stored, u.observed_at) or not component_update_allowed(
            ComponentStatus(row.status), u.status
        ):
            continue
        values: dict[str, Any] = {"status": u.status.value, "reason": u.reason, "observed_at": u.observed_at,
                                  "placed": not u.removed}
        if u.removed and row.preempted_for is not None:
            # The agent only knows it was removed; who preempted it is the scheduler's event
            # ("preempted by workload 19 of project team-a ..."): the reason keeps saying so.
            why = conn.execute(select(event_log.c.message).where(
                event_log.c.subject_type == "workload", event_log.c.subject_id == row.workload_id,
                event_log.c.kind == "preempted").order_by(event_log.c.id.desc()).limit(1)).scalar()
            if why:
                values["reason"] = f"{why}; removed from the cluster, waits in the queue to be admitted again"
        if u.native_name:
            values["name"] = u.native_name
        if u.result is not None and row.status != u.status.value:
            # Once, as it finishes: a resync repeats the result, which must not bring back a
            # model removed from the store since (services/models.py).
            values["result"] = u.result
            made.append((row.workload_id, u.result))
        conn.execute(update(components).where(components.c.id == cid).values(**values))
        if u.endpoint_url:
            endpoints.setdefault(row.workload_id, {})[row.kind] = u.endpoint_url
        applied += 1
        touched[row.workload_id] = max(u.observed_at, touched.get(row.workload_id, u.observed_at))
    for workload_id, found in sorted(endpoints.items()):
        known = conn.execute(select(workloads.c.endpoints).where(workloads.c.id == workload_id)).scalar_one() or {}
        if {**known, **found} != known:
            conn.execute(update(workloads).where(workloads.c.id == workload_id).values(endpoints={**known, **found}))
    model_service.record_results(conn, made)
    if touched:  # one write for all: counts, then usage, each once (the one lock order)
        recompute(conn, touched, actor, locked=locked)
    # Only a preempted workload (its row locked above, so still as read) lets go of anyone.
    preempted = {current[cid].workload_id for cid in latest if current[cid].preempted_for is not None}
    if preempted & touched.keys():
        release_preemptors(conn, sorted(touched), actor)
    return {"applied": applied, "ignored": len(updates) - applied}
