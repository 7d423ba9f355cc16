"""The scheduler's memory: what waits, what holds resources, quotas, capacity and where
workloads that named no cluster may go, loaded once and brought up to date from the event
log at the start of every pass (``services.admission`` decides and writes)."""


import time
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from corral.db.dialect import id_in
from corral.db.tables import clusters, events, projects, quotas, workloads
from corral.domain.clusters import ClusterHealth, cluster_health
from corral.domain.resources import Resources
from corral.domain.scheduling import (
    AdmittedWorkload,
    ProjectQuota,
    QueuedWorkload,
)
from corral.domain.statuses import FINISHED_STATUSES, WorkloadStatus
from corral.services.admission_sql import chunks
from corral.services.clock import utcnow
from corral.services.clusters import capacity_of, node_amounts
from corral.services.event_gaps import EventGaps
from corral.services.quotas import guaranteed_of, limit_of


_FINISHED = [s.value for s in FINISHED_STATUSES]
_PENDING = WorkloadStatus.PENDING.value
_W = (workloads.c.id, workloads.c.project_id, workloads.c.cluster_id, workloads.c.priority,
      workloads.c.preemptible, workloads.c.gpu, workloads.c.cpu, workloads.c.memory,
      workloads.c.ephemeral_storage, workloads.c.created_at, workloads.c.units, workloads.c.spread)
_INF = float("inf")
# Events whose subject is configuration, and whether they change the rules on every cluster.
_CONFIG_EVENTS = {"quota_set": False, "quota_deleted": False, "capacity_changed": False,
                  "cluster_created": False, "cluster_updated": False, "cluster_deleted": False,
                  "cluster_healthy": False,
                  "project_updated": True, "project_deleted": True}
_PG_GAP_WINDOW_S = 30.0  # how long an event id skipped on PostgreSQL may still commit
_CATCH_UP_PAGE = 10_000
_LOAD_CHUNK = 5_000  # rows the driver holds at a time while memory is loaded
_PG_REREAD_ON_LOAD = 1_000  # events before the newest one re-read after a load (may commit late)



class AdmissionMemory:
    """Mixed into the ``Admitter``: loading, catching up and bookkeeping of its memory."""

    engine: Engine
    postgres: bool
    unhealthy_after_s: float
    reload_every_s: float
    loaded: bool
    dirty: set[int]

    # -- loading and catching up -------------------------------------------------------

    def _load(self, conn: Connection) -> None:
        newest = conn.execute(select(func.coalesce(func.max(events.c.id), 0))).scalar_one()
        # On PostgreSQL an event with a smaller id may still commit: re-read the last ones,
        # less those already visible now (what follows reads their effects).
        self.cursor = max(0, newest - _PG_REREAD_ON_LOAD) if self.postgres else newest
        self.known_at_load: set[int] = set(conn.execute(select(events.c.id).where(
            events.c.id > self.cursor, events.c.id <= newest)).scalars()) if self.postgres else set()
        self.gaps = EventGaps(_PG_GAP_WINDOW_S)
        self.queued: dict[int, QueuedWorkload] = {}
        self.queued_on: dict[int, set[int]] = {}  # cluster -> queued ids
        self.admitted: dict[int, dict[int, AdmittedWorkload]] = {}  # cluster -> id -> workload
        self.admitted_on: dict[int, int] = {}  # id -> cluster
        self.since: dict[int, datetime] = {}  # queued_since of what is admitted (for requeue)
        self.usage: dict[tuple[int, int], list[int]] = {}
        # The hash of each waiting workload's stored reason: a pass writes those that changed.
        # (Not the text: 32,000 waiting hold ~4 MB less, and fewer objects stay scattered.)
        self.stored_reason: dict[int, int] = {}
        self.reasons_to_write: dict[int, tuple[str, str]] = {}  # id -> (reason, cause)
        self.cause: dict[int, str] = {}  # the cause of the reason last written (an event marks a change)
        self.waiting_count: dict[tuple[int, int], dict[int, int]] = {}  # key -> priority -> waiting
        self.new: set[int] = set()
        self.heads: dict[tuple[int, int], QueuedWorkload] = {}
        self.quota_waiters: dict[tuple[int, int], int] = {}  # key -> highest priority waiting on quota
        self.reclaimers: set[int] = set()  # clusters where someone waits to reclaim
        self.due: dict[int, float] = {}  # cluster -> monotonic time of a full pass
        self.reasons_fresh_at: dict[int, float] = {}
        self.stale: set[int] = set()  # clusters whose waiting reasons may carry old numbers
        self.busy_at = 0.0  # when newcomers were last decided (reasons are refreshed when idle)
        self.marked_victims: set[int] = set()  # waiting with a preempted_for mark to clear at admission
        self.unnamed: set[int] = set()  # waiting or holding, placed by admission (they named no cluster)
        self.eligible: dict[int, tuple[int, ...]] = {}  # project -> clusters it may be placed on
        # project -> its quota clusters placement skips, in words ("gpu-b: never heard from"):
        # a waiting reason names them, or it would speak of the healthy ones alone.
        self.skipped: dict[int, str] = {}
        self.requests: dict[tuple[int, int, int, int], Resources] = {}  # one object per amount asked for
        self.numbers: dict[int, int] = {}  # one int object per project id or amount
        self._load_config(conn)
        self.dirty: set[int] = set(self.capacity)
        self._load_workloads(conn, None)
        self.loaded = True
        self.reload_at = time.monotonic() + self.reload_every_s

    def _load_config(self, conn: Connection) -> None:
        rows = conn.execute(select(clusters.c.id, clusters.c.name, clusters.c.capacity_gpu, clusters.c.capacity_cpu,
                                   clusters.c.capacity_memory, clusters.c.capacity_ephemeral_storage,
                                   clusters.c.last_heartbeat_at, clusters.c.nodes)).all()
        self.capacity = {r.id: capacity_of(r) for r in rows}
        # What each node has, where the agent reports nodes: a request no node holds never fits.
        self.node_capacity = {r.id: node_amounts(r.nodes) for r in rows if r.nodes}
        self.cluster_names = {r.id: r.name for r in rows}
        self.quotas = {(r.project_id, r.cluster_id): ProjectQuota(guaranteed_of(r), limit_of(r))
                       for r in conn.execute(select(quotas))}
        self.quotas_on: dict[int, list[tuple[int, int]]] = {}
        for key in self.quotas:
            self.quotas_on.setdefault(key[1], []).append(key)
        project_rows = conn.execute(select(projects.c.id, projects.c.name, projects.c.preemption_policy)).all()
        self.policy = {r.id: r.preemption_policy for r in project_rows}
        self.names = {r.id: r.name for r in project_rows}
        self._placements(rows)

    def _placements(self, cluster_rows: list[Any]) -> None:
        """Where each project's workloads that named no cluster may be placed: healthy clusters
        (heard from, not silent) where it holds a quota, by name. A change moves them."""
        now, mono = utcnow(), time.monotonic()
        healthy, due = set(), _INF
        sick: dict[int, str] = {}
        for r in cluster_rows:
            health = cluster_health(r.last_heartbeat_at, now, self.unhealthy_after_s)
            if health is ClusterHealth.HEALTHY:
                healthy.add(r.id)
                silent_in = self.unhealthy_after_s - (now - r.last_heartbeat_at).total_seconds()
                due = min(due, mono + max(silent_in, 0.0) + 0.5)
            else:
                sick[r.id] = "never heard from" if health is ClusterHealth.VERIFYING else "its agent is silent"
        skipped: dict[int, list[str]] = {}
        for c in sorted(sick, key=lambda c: self.cluster_names[c]):
            for (p, _) in self.quotas_on.get(c, ()):
                skipped.setdefault(p, []).append(f"{self.cluster_names[c]}: {sick[c]}")
        self.skipped = {p: "; ".join(parts) for p, parts in skipped.items()}
        self.health_due = min(due, mono + self.unhealthy_after_s)
        by_name = sorted(healthy, key=lambda c: self.cluster_names[c])
        eligible: dict[int, tuple[int, ...]] = {}
        for c in by_name:
            for (p, qc) in self.quotas_on.get(c, ()):
                eligible[p] = eligible.get(p, ()) + (c,)
        if eligible == self.eligible:
            return
        changed = {p for p in set(eligible) | set(self.eligible) if eligible.get(p) != self.eligible.get(p)}
        self.eligible = eligible
        for wid in [i for i in self.unnamed if i in self.queued and self.queued[i].project_id in changed]:
            w = self._unqueue(wid)
            self._enqueue(replace(w, clusters=self._clusters_for(w.project_id, w.cluster_id)))
            self.dirty |= set(w.clusters) | set(self.queued[wid].clusters) | {w.cluster_id}

    def _clusters_for(self, project_id: int, cluster_id: int) -> tuple[int, ...]:
        """The clusters a workload that named none may be placed on ((): only its own)."""
        where = self.eligible.get(project_id, ())
        return () if where in ((), (cluster_id,)) else where

    def _load_workloads(self, conn: Connection, ids: list[int] | None) -> None:
        """Read workloads (all that wait or hold resources, or the given ids) and reconcile."""
        columns = (*_W, workloads.c.status, workloads.c.status_reason, workloads.c.admitted_at,
                   workloads.c.delete_requested_at, workloads.c.cluster_named, workloads.c.preempted_for)
        if ids is None:
            # Streamed (a server-side cursor on PostgreSQL): the driver holds a chunk of the
            # 100,000 rows at a time, not all of them beside what is built from them.
            for r in conn.execute(select(*columns).where(
                    workloads.c.admitted_at.is_not(None), workloads.c.status.not_in(_FINISHED))
                    .execution_options(yield_per=_LOAD_CHUNK)):
                self._reconcile(r)
            for r in conn.execute(select(*columns).where(
                    workloads.c.status == _PENDING, workloads.c.admitted_at.is_(None),
                    workloads.c.delete_requested_at.is_(None)).execution_options(yield_per=_LOAD_CHUNK)):
                self._reconcile(r)
            return
        for chunk in chunks(ids):
            for r in conn.execute(select(*columns).where(id_in(workloads.c.id, chunk, self.postgres))):
                self._reconcile(r)

    def _reconcile(self, r: Any) -> None:
        """Make the memory agree with one workload row."""
        wid, c = r.id, r.cluster_id
        should_wait = r.status == _PENDING and r.admitted_at is None and r.delete_requested_at is None
        should_hold = r.admitted_at is not None and r.status not in _FINISHED
        held_on = self.admitted_on.get(wid)
        if held_on is not None and not should_hold:
            self._release(wid)
            self.dirty.add(held_on)  # room was made
        if wid in self.queued and not should_wait:
            self._unqueue(wid)
            self.dirty.add(c)  # its queue's head may have changed
        if r.preempted_for is not None and should_wait:
            self.marked_victims.add(wid)
        if not r.cluster_named and (should_wait or should_hold):
            self.unnamed.add(wid)
        else:
            self.unnamed.discard(wid)
        if should_hold and held_on is None:
            self._hold(AdmittedWorkload(wid, self._shared(r.project_id), c, r.priority, self._request(r),
                                        r.preemptible, r.admitted_at, units=r.units, spread=r.spread), r.created_at)
        if should_wait and wid not in self.queued:
            self._enqueue(QueuedWorkload(wid, self._shared(r.project_id), c, r.priority, self._request(r),
                                         r.preemptible, r.created_at, self._clusters_for(r.project_id, c)
                                         if wid in self.unnamed else (), units=r.units, spread=r.spread))
            self.stored_reason[wid] = hash(r.status_reason)

    # A hundred thousand workloads ask for a few dozen distinct amounts and belong to a few
    # hundred projects: one object for each (ints past 256 are not shared by Python) instead
    # of one per row keeps ~20 MB out of the scheduler's memory.
    def _request(self, r: Any) -> Resources:
        key = (r.gpu, r.cpu, r.memory, r.ephemeral_storage)
        found = self.requests.get(key)
        if found is None:
            found = self.requests[key] = Resources(*map(self._shared, key))
        return found

    def _shared(self, n: int) -> int:
        return self.numbers.setdefault(n, n)

    def _catch_up(self, conn: Connection) -> None:
        cols = (events.c.id, events.c.subject_type, events.c.subject_id, events.c.kind)
        # In ranges of ids up to the newest: a bounded range is a walk of the primary key
        # whatever PostgreSQL's statistics say. An open one (id > cursor, even with a LIMIT)
        # was planned as a scan and sort of the whole table while the table had never been
        # analysed (a third of it estimated to match): 35 ms a pass with 400,000 events.
        newest = conn.execute(select(func.coalesce(func.max(events.c.id), 0))).scalar_one()
        rows = []
        start = self.cursor
        while start < newest:
            end = min(start + _CATCH_UP_PAGE, newest)
            rows += conn.execute(select(*cols).where(events.c.id > start, events.c.id <= end)
                                 .order_by(events.c.id)).all()
            start = end
        if self.gaps:
            self.gaps.expire(time.monotonic())
            if self.gaps:
                late = conn.execute(select(*cols).where(self.gaps.condition(events.c.id)).order_by(events.c.id)).all()
                self.gaps.found([r.id for r in late])
                rows = late + rows
        if rows and self.postgres:
            # Ids are taken in one order and committed in another: a skipped id may be an
            # event still being committed. Look for it again for a while.
            expected = self.cursor + 1
            mono = time.monotonic()
            for r in rows:
                if r.id > self.cursor:
                    self.gaps.add(expected, r.id - 1, mono)
                    expected = r.id + 1
        if rows:
            self.cursor = max(self.cursor, rows[-1].id)
        if self.known_at_load:
            rows = [r for r in rows if r.id not in self.known_at_load]
            self.known_at_load = set()
        touched: set[int] = set()
        config_clusters: set[int] = set()
        everywhere = False
        for r in rows:
            if r.subject_type == "workload":
                # What this scheduler did itself is known already.
                if r.kind == "admitted" and r.subject_id in self.admitted_on:
                    continue
                if r.kind in ("preempted", "waiting") and r.subject_id in self.queued:
                    continue
                touched.add(r.subject_id)
            elif r.kind in _CONFIG_EVENTS:
                everywhere |= _CONFIG_EVENTS[r.kind]
                if r.subject_type in ("quota", "cluster"):
                    config_clusters.add(r.subject_id)
        if config_clusters or everywhere:
            self._load_config(conn)
            self.dirty |= set(self.capacity) if everywhere else config_clusters & set(self.capacity)
        if touched:
            self._load_workloads(conn, sorted(touched))

    # -- memory bookkeeping ------------------------------------------------------------

    def _enqueue(self, w: QueuedWorkload) -> None:
        self.queued[w.id] = w
        for c in w.clusters or (w.cluster_id,):  # it may be placed on any of them
            self.queued_on.setdefault(c, set()).add(w.id)
        self.new.add(w.id)
        by_priority = self.waiting_count.setdefault((w.project_id, w.cluster_id), {})
        by_priority[w.priority] = by_priority.get(w.priority, 0) + 1

    def _unqueue(self, wid: int) -> QueuedWorkload:
        w = self.queued.pop(wid)
        self.marked_victims.discard(wid)
        for c in w.clusters or (w.cluster_id,):
            self.queued_on[c].discard(wid)
        self.new.discard(wid)
        self.stored_reason.pop(wid, None)
        self.reasons_to_write.pop(wid, None)
        self.cause.pop(wid, None)
        key = (w.project_id, w.cluster_id)
        self.waiting_count[key][w.priority] -= 1
        head = self.heads.get(key)
        if head is not None and head.id == wid:
            del self.heads[key]
        return w

    def _hold(self, a: AdmittedWorkload, since: datetime) -> None:
        self.admitted.setdefault(a.cluster_id, {})[a.id] = a
        self.admitted_on[a.id] = a.cluster_id
        self.since[a.id] = since
        u = self.usage.setdefault((a.project_id, a.cluster_id), [0, 0, 0, 0])
        r = a.request
        u[0] += r.gpu
        u[1] += r.cpu
        u[2] += r.memory
        u[3] += r.ephemeral_storage

    def _release(self, wid: int) -> AdmittedWorkload:
        c = self.admitted_on.pop(wid)
        a = self.admitted[c].pop(wid)
        self.since.pop(wid, None)
        u = self.usage[(a.project_id, c)]
        r = a.request
        u[0] -= r.gpu
        u[1] -= r.cpu
        u[2] -= r.memory
        u[3] -= r.ephemeral_storage
        return a
