"""Writing what an admission pass decided (``admission.Admitter`` runs the pass): the
admissions and preemptions with their statuses, events and kept usage; the guard that
checks them against quota limits and capacity by the database's own count before the pass
commits; and the waiting reasons, a budget at a time.

Rows are locked in one order everywhere (workloads by id, then components, then kept
counts, then usage, each in key order), as the status writer does, so a pass never
deadlocks with requests.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from corral.db.dialect import id_in
from corral.db.tables import components, project_usage, workloads
from corral.domain.resources import RESOURCE_NAMES, Limit, Resources
from corral.domain.scheduling import Decisions, QueuedWorkload
from corral.domain.statuses import FINISHED_STATUSES, ComponentStatus, WorkloadStatus
from corral.services import events as event_service
from corral.services.admission_memory import AdmissionMemory
from corral.services.admission_sql import chunks, insert_events, moved_counts, set_reasons
from corral.services.clock import utcnow
from corral.services.preemption import held_reason
from corral.services.status import Tallies, recompute, usage_delta

ADMITTED_REASON = "admitted to cluster {cluster}; waiting for its agent to start it"
ADMITTED_COMPONENT_REASON = "admitted; waiting for the cluster agent"
REASON_PASS_S = 0.025  # how long a pass writing the backlog of reasons should take
MIN_REASON_BUDGET = 50
_FINISHED = [s.value for s in FINISHED_STATUSES]
_PENDING = WorkloadStatus.PENDING.value


class GuardViolation(RuntimeError):
    """The database's totals disagree with what the pass decided on: it is rolled back
    (and the scheduler reloads). A bug if it ever happens; tests fail on it."""


class RaceLost(RuntimeError):
    """A workload to admit changed between the catch-up and the write (a delete raced the
    pass): the pass is rolled back and the next one, after a reload, decides again."""


class AdmissionWrites(AdmissionMemory):
    """The writing half of an ``Admitter`` (its memory: ``AdmissionMemory``; its settings
    ``actor``, ``postgres``, ``reason_budget`` and ``reason_cost_s``: set by the Admitter)."""

    actor: str
    postgres: bool
    reason_budget: int | None
    reason_cost_s: float

    def _write(self, conn: Connection, d: Decisions, now: datetime) -> None:
        """Persist admissions and preemptions. Rows are locked in one order everywhere
        (workloads by id, then components, then kept counts, then usage, each in key order),
        as the status writer does, so a pass never deadlocks with requests."""
        victims = []
        victims_of: dict[int, list[int]] = {}
        for p in d.preemptions:
            c = self.admitted_on[p.workload_id]
            victims.append((self.admitted[c][p.workload_id], p.reason, p.for_workload_id))
            victims_of.setdefault(p.for_workload_id, []).append(p.workload_id)
        by_cluster: dict[int, list[QueuedWorkload]] = {}
        relocated: list[tuple[QueuedWorkload, int]] = []  # placed elsewhere than its tentative cluster
        for a in d.admissions:
            w = self.queued[a.workload_id]
            c = a.cluster_id if a.cluster_id is not None else w.cluster_id
            by_cluster.setdefault(c, []).append(w)
            if c != w.cluster_id:
                relocated.append((w, c))
        if self.postgres and (victims or by_cluster):
            every = sorted([v.id for v, _, _ in victims] + [a.workload_id for a in d.admissions])
            for chunk in chunks(every):
                conn.execute(select(workloads.c.id).where(id_in(workloads.c.id, chunk, True)).order_by(workloads.c.id)
                             .with_for_update(key_share=True)).all()

        # Counts, then usage, each written once at the end (the one lock order): the victims'
        # status moves, the relocated workloads' counts, the usage of all.
        tallies = Tallies()
        event_rows: list[dict[str, Any]] = []
        # Preempted: back to the queue (their capacity was counted free by the decision).
        for victim, reason, preemptor in victims:
            # It stays on the cluster until its agent has removed it; its preemptor is held
            # until then (services.preemption).
            moved = conn.execute(update(workloads).where(workloads.c.id == victim.id,
                                                         workloads.c.admitted_at.is_not(None),
                                                         workloads.c.status.not_in(_FINISHED))
                                 .values(admitted_at=None, status_reason=reason, preempted_for=preemptor,
                                         cluster_named=True, version=workloads.c.version + 1))
            if moved.rowcount != 1:
                raise RaceLost(f"workload {victim.id} to preempt finished meanwhile")
        admitted_reason = {c: ADMITTED_REASON.format(cluster=self.cluster_names.get(c, c)) for c in by_cluster}
        for c, admitted in by_cluster.items():
            ids = [w.id for w in admitted]
            written = 0
            for chunk in chunks(ids):
                written += conn.execute(
                    update(workloads)
                    .where(id_in(workloads.c.id, chunk, self.postgres), workloads.c.admitted_at.is_(None),
                           workloads.c.status == _PENDING, workloads.c.delete_requested_at.is_(None))
                    .values(admitted_at=now, status_reason=admitted_reason[c], version=workloads.c.version + 1)
                ).rowcount
            # A victim admitted again holds nothing back any more (services.preemption):
            # its mark is cleared apart, for the few known to carry one (an indexed column
            # in every admission's UPDATE would cost each an index write).
            marked = [i for i in ids if i in self.marked_victims]
            if marked:
                conn.execute(update(workloads).where(id_in(workloads.c.id, marked, self.postgres))
                             .values(preempted_for=None))
            if written != len(ids):
                raise RaceLost(f"{len(ids) - written} of {len(ids)} workloads to admit on cluster {c} "
                               "changed meanwhile (deleted?)")
        for w, c in relocated:  # placed elsewhere than its tentative cluster (indexed columns: only these)
            conn.execute(update(workloads).where(workloads.c.id == w.id)
                         .values(cluster_id=c, cluster_name=self.cluster_names.get(c, str(c))))
        placed_on = {w.id: c for c, admitted in by_cluster.items() for w in admitted}
        for preemptor, held in victims_of.items():
            c = placed_on[preemptor]
            conn.execute(update(workloads).where(workloads.c.id == preemptor)
                         .values(status_reason=held_reason(self.cluster_names.get(c, str(c)), held)))
        for c, admitted in by_cluster.items():
            for chunk in chunks([w.id for w in admitted]):
                conn.execute(update(components)
                             .where(id_in(components.c.workload_id, chunk, self.postgres),
                                    components.c.status == ComponentStatus.PENDING.value)
                             .values(reason=ADMITTED_COMPONENT_REASON, observed_at=now))
        if victims:
            recompute(conn, {victim.id: now for victim, _, _ in victims}, self.actor, tallies=tallies)
        for victim, reason, _ in victims:
            tallies.usage.append(usage_delta(victim.project_id, victim.cluster_id,
                                             used=Resources() - victim.request, queued=1))
            event_rows.append(event_service.event_row(
                actor=self.actor, subject_type="workload", subject_id=victim.id, project_id=victim.project_id,
                kind="preempted", message=reason, at=now))
        event_service.record_many(conn, event_rows)
        added: dict[tuple[int, int], list[int]] = {}
        for c, admitted in by_cluster.items():
            insert_events(conn, self.postgres, at=now, actor=self.actor, kind="admitted", message=admitted_reason[c],
                           ids=[w.id for w in admitted], project_ids=[w.project_id for w in admitted])
            for w in admitted:
                key = (w.project_id, c)
                acc = added.get(key)
                r = w.request
                if acc is None:
                    acc = added[key] = [r.gpu, r.cpu, r.memory, r.ephemeral_storage, 0]
                else:
                    acc[0] += r.gpu
                    acc[1] += r.cpu
                    acc[2] += r.memory
                    acc[3] += r.ephemeral_storage
                if w.cluster_id == c:
                    acc[4] -= 1
                else:  # it was counted queued where it was tentatively placed
                    tallies.usage.append(usage_delta(w.project_id, w.cluster_id, queued=-1))
        if relocated:
            tallies.counts += moved_counts(conn, relocated, self.postgres)
        for (p, c), acc in added.items():
            tallies.usage.append(usage_delta(p, c, used=Resources(*acc[:4]), queued=acc[4]))
        tallies.write(conn)
        if added:
            self._guard(conn, d, added)

    def _guard(self, conn: Connection, d: Decisions, added: dict[tuple[int, int], list[int]]) -> None:
        """Check, in the pass's transaction, that what it admitted into stays within quota
        limits and cluster capacity by the database's own count."""
        touched_clusters = sorted({c for _, c in added})
        freed: dict[int, list[int]] = {}
        for p in d.preemptions:
            a = self.admitted[self.admitted_on[p.workload_id]][p.workload_id]
            f = freed.setdefault(a.cluster_id, [0, 0, 0, 0])
            for i, x in enumerate(a.request.as_tuple()):
                f[i] += x
        totals: dict[int, list[int]] = {}
        for r in conn.execute(select(project_usage).where(project_usage.c.cluster_id.in_(touched_clusters))):
            u = (r.gpu, r.cpu, r.memory, r.ephemeral_storage)
            t = totals.setdefault(r.cluster_id, [0, 0, 0, 0])
            for i in range(4):
                t[i] += u[i]
            if (r.project_id, r.cluster_id) in added:
                q = self.quotas.get((r.project_id, r.cluster_id))
                lim = q.limit if q is not None else Limit(0, 0, 0, 0)
                over = [n for n, x, bound, grew in zip(RESOURCE_NAMES, u, (lim.gpu, lim.cpu, lim.memory,
                                                                         lim.ephemeral_storage),
                                                      added[(r.project_id, r.cluster_id)])
                        if bound is not None and x > bound and grew > 0]
                if over:
                    raise GuardViolation(f"project {r.project_id} over its limit on cluster {r.cluster_id} "
                                         f"({', '.join(over)})")
        for c, t in totals.items():
            cap = self.capacity[c].as_tuple()
            grew = [sum(acc[i] for (_, cc), acc in added.items() if cc == c) - freed.get(c, [0] * 4)[i]
                    for i in range(4)]
            over = [RESOURCE_NAMES[i] for i in range(4) if t[i] > cap[i] and grew[i] > 0]
            if over:
                raise GuardViolation(f"cluster {c} over capacity ({', '.join(over)})")

    def _heads_first(self, reasons: dict[int, tuple[str, str]], budget: int) -> list[tuple[int, tuple[str, str]]]:
        """``budget`` of ``reasons``: the queues' heads first (what users watch), then the
        rest in order. Without copying or sorting the whole backlog: a pass writes a budget
        of a backlog that can hold every queued workload."""
        items = [(w.id, reasons[w.id]) for w in self.heads.values() if w.id in reasons][:budget]
        taken = {wid for wid, _ in items}
        for item in reasons.items():
            if len(items) >= budget:
                break
            if item[0] not in taken:
                items.append(item)
        return items

    def _write_reasons(self, conn: Connection, only: set[int] | None) -> int:
        """Write changed waiting reasons (within the budget); a new cause is also an event.

        A pass that decided newcomers writes only theirs (``only``): the backlog, written a
        budget at a time, must not delay the admission of a newcomer that fits."""
        if not self.reasons_to_write:
            return 0
        budget = self.reason_budget
        if budget is not None and self.reason_cost_s > 0:
            budget = min(budget, max(MIN_REASON_BUDGET, int(REASON_PASS_S / self.reason_cost_s)))
        if only is not None:
            items = [(wid, self.reasons_to_write[wid]) for wid in only if wid in self.reasons_to_write]
            if budget is not None and len(items) > budget:
                items = self._heads_first(dict(items), budget)
        elif budget is not None and len(self.reasons_to_write) > budget:
            items = self._heads_first(self.reasons_to_write, budget)
        else:
            items = list(self.reasons_to_write.items())
        now = utcnow()
        started = time.perf_counter()
        written = set_reasons(conn, self.postgres, [(wid, reason) for wid, (reason, _) in items])
        event_rows = []
        for wid, reason in written:
            cause = self.reasons_to_write.pop(wid)[1]
            self.stored_reason[wid] = hash(reason)
            if self.cause.get(wid) != cause:
                self.cause[wid] = cause
                w = self.queued[wid]
                event_rows.append(event_service.event_row(
                    actor=self.actor, subject_type="workload", subject_id=wid, project_id=w.project_id,
                    kind="waiting", message=reason, at=now))
        event_service.record_many(conn, event_rows)
        if len(items) >= MIN_REASON_BUDGET:  # a few reasons say little about the rate
            self.reason_cost_s = (time.perf_counter() - started) / len(items)
        return len(self.reasons_to_write)
