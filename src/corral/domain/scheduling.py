"""Admission decisions: which queued workloads to admit and which admitted ones to preempt.

``schedule(snapshot)`` is a pure function of a ``Snapshot`` (capacity, quotas, what holds
resources, what waits) and returns ``Decisions``; the caller applies them (admits, removes
preempted workloads from their clusters and requeues them, records reasons and events).
It implements the admission semantics of the quotas spec (``quotas.md``: guaranteed and
limit per project and cluster, borrowing, reclaim, priority preemption). The rules, in the
order the code applies them:

1. **Order.** Queued workloads are considered one at a time in one global order: priority
   descending, then ``queued_since`` ascending, then id ascending. Restricted to one project
   on one cluster this is that project's queue on that cluster. Priority is strict: a
   higher-priority workload is always considered before a lower-priority one, however long
   that one has waited.
2. **Fit.** A workload is admitted when (a) its project's usage on its cluster plus its
   request stays within the project's ``limit`` there, (b) the cluster has the free capacity
   (capacity minus every admitted request on it, discovered ones included) and (c) for a
   non-preemptible workload, the project's usage plus the request stays within
   ``guaranteed``. Every admission (and preemption) updates usage and free capacity for the
   decisions after it in the same pass.
3. **No quota.** With no quota entry for (project, cluster) nothing of the project is
   admitted there. A workload that can never fit as things are configured (its request
   alone exceeds the limit, the cluster's capacity or, if non-preemptible, the guarantee;
   or no node of the cluster, as its agent reports them, can hold its parts: see
   ``domain.node_fit``) waits with a reason that says so.
4. **Best-effort FIFO and anti-starvation.** A workload that does not fit does not block
   the workloads behind it. The *head* of a project's queue on a cluster is the first
   workload of that queue, in queue order, that is not admitted in this pass (workloads that
   can never fit, rule 3, are passed over: they would block the queue for ever). If the head
   has waited longer than ``starvation_after_s`` (``now - queued_since``) and still does not
   fit after the preemptions it may make (rules 5 and 6), then **no later workload of the same
   project on that cluster is admitted in this pass**: they wait "behind workload N, which has
   waited over Ns". Capacity that the project's finishing work frees then accumulates (quota
   headroom and cluster capacity are not taken by its own smaller workloads) until the head
   fits. Other projects are not blocked; a head that fits within its guarantee reclaims
   capacity from borrowers (rule 5), so it cannot starve; a head that would borrow waits for
   idle capacity, which borrowing never guarantees. Only the head blocks: a starving workload
   behind a head that is not starving does not, because once that head has waited long enough
   it blocks in turn, and so on down the queue.
5. **Reclaim.** When a workload fits within its project's guarantee (usage + request <=
   ``guaranteed`` in every dimension) and its limit, but the cluster lacks free capacity, it
   preempts admitted workloads of *other* projects that borrow on that cluster (usage above
   ``guaranteed`` in some dimension): preemptible, not discovered, not admitted in this pass;
   lowest priority first, then most recently admitted (then highest id). A victim must free a
   dimension in which the cluster is still short *and* in which its project is above its
   guarantee (it then frees its whole request); so a project at or below its guarantee in every
   dimension supplies no further victims, and one that borrows only CPU loses nothing to a
   workload short of GPUs. Victims are taken only until the workload fits; if all eligible
   victims would not be enough, nothing is preempted and the workload waits. A workload that
   would itself borrow never reclaims.
6. **Priority preemption within a project.** When the workload does not fit under its
   project's ``limit`` (for a non-preemptible one: under the smaller of ``limit`` and
   ``guaranteed``) and the project's policy is ``lower_priority`` (the default, also for any
   unknown value; ``never`` disables it), it preempts the project's own preemptible, non-discovered workloads on that
   cluster with strictly lower priority, lowest priority first then most recently admitted,
   each freeing a dimension still over the bound, until usage + request is within it; then, if
   the cluster is still short, more of them (each freeing a short dimension), then reclaim
   (rule 5) if the workload is within its guarantee. Equal priority never preempts. If it
   cannot be made to fit, nothing is preempted.
7. **Preempted workloads** stop counting as usage immediately for the rest of the pass; the
   caller returns them to the queue. They are not in the queue of this snapshot, so they are
   not re-admitted in the same pass. ``queue`` and ``admitted`` must be disjoint.
8. **Discovered workloads** (found on a cluster, not submitted through Corral) count as
   usage, can put a project over its quota, and are never victims.
9. **Reasons.** Every queued workload that is not admitted gets a ``Waiting`` with a reason
   naming numbers and its 1-based position in its project's queue on that cluster, counting
   only workloads still waiting after this pass.
10. **Placement.** A workload that named no cluster carries the clusters it may run on
   (``QueuedWorkload.clusters``: healthy ones where its project holds a quota). At its turn
   it is placed where it fits as things stand (rule 2), preferring a cluster where it stays
   within its project's guarantee, then the one with the most free capacity (GPUs first),
   then the order given; if it fits nowhere, where it may preempt (rules 5, 6), in that
   order; else it waits in its project's queue on each of them, with one reason per
   cluster ("cluster a: ...; cluster b: ..."), its position being that on ``cluster_id``.

Performance (bench/schedule_decision.py: 100,000 queued and 100,000 admitted workloads,
1,000 projects, 10 clusters): usage and free capacity live in 4-element lists keyed by
(project, cluster) and cluster, so the fast path (it fits) is a handful of comparisons. Victim
lists are built per cluster only when a preemption is first considered there: sorted once,
split per project and per dimension, and merged through per-dimension heaps holding each
borrowing project's next victim, so an attempt looks only at victims that could help.
Running totals (what lower priorities hold per project, what borrowers hold per cluster) make
hopeless attempts fail in O(1); reason texts are memoised.
"""

from __future__ import annotations

import gc

from corral.domain.schedule_model import (  # the scheduler's vocabulary, re-exported
    POLICY_LOWER_PRIORITY,
    POLICY_NEVER,
    PREEMPTION_POLICIES,
    Admission,
    AdmittedWorkload,
    Decisions,
    Preemption,
    ProjectQuota,
    QueuedWorkload,
    Snapshot,
    Waiting,
    queue_key,
    queue_order,
)

__all__ = ["POLICY_LOWER_PRIORITY", "POLICY_NEVER", "PREEMPTION_POLICIES", "Admission", "AdmittedWorkload",
           "Decisions", "Preemption", "ProjectQuota", "QueuedWorkload", "Snapshot", "Waiting", "queue_key",
           "queue_order", "schedule"]
from corral.domain.node_fit import node_shortfall
from corral.domain.schedule_reasons import BORROWS, RECLAIM_SHORT, Reasons, seconds
from corral.domain.schedule_victims import VictimBook, _Entry, _Victim, _Victims

_INF = float("inf")
_DIMS = (0, 1, 2, 3)


def schedule(snapshot: Snapshot) -> Decisions:
    """Decide one admission pass over ``snapshot`` (see the module docstring for the rules).

    The pass allocates many small objects and frees none of them until it returns, so the
    cyclic garbage collector is paused meanwhile (it would only rescan them: a third of the
    time on a 100,000-workload snapshot); reference counting still frees memory.
    """
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        return _Pass(snapshot).run()
    finally:
        if paused:
            gc.enable()


class _Pass(Reasons, VictimBook):
    def __init__(self, s: Snapshot) -> None:
        self.s = s
        self.names = s.project_names
        self.policy = s.preemption_policy
        usage: dict[tuple[int, int], list[int]] = {}
        free: dict[int, list[int]] = {c: list(r.as_tuple()) for c, r in s.capacity.items()}
        self.cap = {c: r.as_tuple() for c, r in s.capacity.items()}
        self.nodes = s.nodes
        self.node_reasons: dict[tuple, str | None] = {}  # by cluster and shape
        if s.usage is not None:
            totals = [(key, list(u)) for key, u in s.usage.items()]
        else:
            totals = []
            for a in s.admitted:
                r = a.request
                key = (a.project_id, a.cluster_id)
                u = usage.get(key)
                if u is None:
                    usage[key] = [r.gpu, r.cpu, r.memory, r.ephemeral_storage]
                else:
                    u[0] += r.gpu
                    u[1] += r.cpu
                    u[2] += r.memory
                    u[3] += r.ephemeral_storage
            totals = list(usage.items())
        for key, u in totals:
            usage[key] = u
            c = key[1]
            f = free.get(c)
            if f is None:
                f = free[c] = [0, 0, 0, 0]
                self.cap[c] = (0, 0, 0, 0)
            f[0] -= u[0]
            f[1] -= u[1]
            f[2] -= u[2]
            f[3] -= u[3]
        self.usage = usage
        self.free = free
        # (project, cluster) -> (guaranteed, limit, bound for non-preemptible); unbounded -> inf
        self.q: dict[tuple[int, int], tuple[tuple, tuple, tuple]] = {}
        for key, quota in s.quotas.items():
            g = quota.guaranteed.as_tuple()
            lim = tuple(_INF if x is None else x for x in (quota.limit.gpu, quota.limit.cpu,
                                                          quota.limit.memory, quota.limit.ephemeral_storage))
            self.q[key] = (g, lim, tuple(min(a, b) for a, b in zip(g, lim)))
        self.admissions: list[Admission] = []
        self.preemptions: list[Preemption] = []
        # victim structures, built per cluster when a preemption is first considered there
        self.built: set[int] = set()
        self.groups: dict[int, list[AdmittedWorkload]] | None = None
        self.victims: dict[tuple[int, int], _Victims] = {}
        self.heaps: dict[int, tuple[list[_Entry], ...]] = {}  # per cluster, per dimension
        self.nkeys: dict[int, int] = {}
        # per cluster and dimension: what the victims of projects that borrow (in a dimension in
        # which they have victims) hold: an upper bound on what reclaim could free there
        self.reclaimable: dict[int, list[int]] = {}
        self.removed: set[int] = set()
        self.version: dict[int, int] = {}  # per cluster: bumped on every change there
        self.failed_reclaim: dict[int, tuple[int, set]] = {}
        self.reasons: dict[tuple, str] = {}  # reason texts by everything they depend on
        # per (project, cluster): [guaranteed, limit, non-preemptible bound, usage, free, capacity,
        #                          why later ones wait (starving head), head seen, waiting so far]
        self.states: dict[tuple[int, int], list] = {}
        self.waiting: list[tuple[int, list, str, int, str]] = []  # (workload id, state, reason, position, cause)

    # -- main loop ----------------------------------------------------------------------

    def run(self) -> Decisions:
        s = self.s
        order = queue_order(s.queue)
        usage, free, quotas, cap = self.usage, self.free, self.q, self.cap
        built, victims, version = self.built, self.victims, self.version
        admissions = self.admissions
        now, starve = s.now, s.starvation_after_s
        zero4 = (0, 0, 0, 0)
        states = self.states
        waiting = self.waiting
        for w in order:
            if w.clusters:
                self._place(w)
                continue
            p = w.project_id
            c = w.cluster_id
            key = (p, c)
            st = states.get(key)
            if st is None:
                q = quotas.get(key)
                if q is None:
                    st = [None, f"no quota for project {self.name(p)} on this cluster", 0, 0, 0, 0, 0, 0, 0]
                else:
                    u = usage.get(key)
                    if u is None:
                        u = usage[key] = [0, 0, 0, 0]
                    f = free.get(c)
                    if f is None:
                        f = free[c] = [0, 0, 0, 0]
                    st = [q[0], q[1], q[2], u, f, cap.get(c, zero4), None, False, 0]
                states[key] = st
            g = st[0]
            if g is None:
                st[8] += 1
                waiting.append((w.id, st, st[1], st[8], "no_quota"))
                continue
            rq = w.request
            r0, r1, r2, r3 = rq.gpu, rq.cpu, rq.memory, rq.ephemeral_storage
            b = st[1] if w.preemptible else st[2]
            k = st[5]
            if not (r0 <= b[0] and r1 <= b[1] and r2 <= b[2] and r3 <= b[3]
                    and r0 <= k[0] and r1 <= k[1] and r2 <= k[2] and r3 <= k[3]):
                st[8] += 1
                waiting.append((w.id, st, self._never_fits((r0, r1, r2, r3), w.preemptible, g, st[1], k, p),  st[8],
                                "never_fits"))
                continue
            if c in self.nodes:
                on_nodes = self._node_reason(c, (r0, r1, r2, r3), w)
                if on_nodes is not None:
                    st[8] += 1
                    waiting.append((w.id, st, on_nodes, st[8], "never_fits"))
                    continue
            if st[6] is not None:
                st[8] += 1
                waiting.append((w.id, st, st[6], st[8], "blocked"))
                continue
            u = st[3]
            f = st[4]
            within = u[0] + r0 <= b[0] and u[1] + r1 <= b[1] and u[2] + r2 <= b[2] and u[3] + r3 <= b[3]
            if within and r0 <= f[0] and r1 <= f[1] and r2 <= f[2] and r3 <= f[3]:
                u[0] += r0
                u[1] += r1
                u[2] += r2
                u[3] += r3
                f[0] -= r0
                f[1] -= r1
                f[2] -= r2
                f[3] -= r3
                admissions.append(Admission(w.id, c))
                if c in built:
                    version[c] += 1
                    v = victims.get(key)
                    if v is not None:
                        # usage only grew: only a dimension that starts borrowing changes anything
                        if v.dirty:
                            self._refresh(key, v)
                        else:
                            for d in v.lending:
                                if u[d] > g[d]:
                                    self._refresh(key, v)
                                    break
                continue
            if within and not (
                u[0] + r0 <= g[0] and u[1] + r1 <= g[1] and u[2] + r2 <= g[2] and u[3] + r3 <= g[3]
            ):
                # within the limit, short of cluster capacity, and it would borrow: no reclaim
                reason, cause = self._cluster_reason((r0, r1, r2, r3), f, p, BORROWS), "capacity"
            else:
                why = self._slow(w, key, (r0, r1, r2, r3), u, f, g, st[1], b)
                if why is None:
                    continue
                reason, cause = why
            st[8] += 1
            waiting.append((w.id, st, reason, st[8], cause))
            if not st[7]:
                st[7] = True
                if (now - w.queued_since).total_seconds() > starve:
                    st[6] = f"waiting behind workload {w.id}, which has waited over {seconds(starve)}"
        out = [Waiting(wid, reason, pos, st[8], cause) for wid, st, reason, pos, cause in waiting]
        return Decisions(admissions, self.preemptions, out)

    # -- placement (rule 10) ------------------------------------------------------------

    def _state(self, key: tuple[int, int]) -> list:
        st = self.states.get(key)
        if st is None:
            p, c = key
            q = self.q.get(key)
            if q is None:
                st = [None, f"no quota for project {self.name(p)} on this cluster", 0, 0, 0, 0, 0, 0, 0]
            else:
                u = self.usage.setdefault(key, [0, 0, 0, 0])
                f = self.free.setdefault(c, [0, 0, 0, 0])
                st = [q[0], q[1], q[2], u, f, self.cap.get(c, (0, 0, 0, 0)), None, False, 0]
            self.states[key] = st
        return st

    def _node_reason(self, c: int, r: tuple[int, int, int, int], w: QueuedWorkload) -> str | None:
        """Why no node of cluster ``c`` can hold the workload's parts (rule 3), or None."""
        key = (c, r, w.units, w.spread)
        if key not in self.node_reasons:
            self.node_reasons[key] = node_shortfall(r, w.units, w.spread, self.nodes[c])
        return self.node_reasons[key]

    def _place(self, w: QueuedWorkload) -> None:
        """A workload that may run on any of several clusters (rule 10)."""
        p = w.project_id
        rq = w.request
        r = (rq.gpu, rq.cpu, rq.memory, rq.ephemeral_storage)
        fits: list[tuple] = []
        short: list[tuple[int, tuple[int, int], list, bool]] = []  # may fit by preempting
        why: dict[int, tuple[str, str]] = {}
        for i, c in enumerate(w.clusters):
            key = (p, c)
            st = self._state(key)
            g = st[0]
            if g is None:
                why[c] = (st[1], "no_quota")
                continue
            b = st[1] if w.preemptible else st[2]
            k = st[5]
            if any(r[d] > b[d] or r[d] > k[d] for d in _DIMS):
                why[c] = (self._never_fits(r, w.preemptible, g, st[1], k, p), "never_fits")
                continue
            on_nodes = self._node_reason(c, r, w) if c in self.nodes else None
            if on_nodes is not None:
                why[c] = (on_nodes, "never_fits")
                continue
            if st[6] is not None:
                why[c] = (st[6], "blocked")
                continue
            u, f = st[3], st[4]
            within = all(u[d] + r[d] <= b[d] for d in _DIMS)
            if within and all(r[d] <= f[d] for d in _DIMS):
                borrows = any(u[d] + r[d] > g[d] for d in _DIMS)
                fits.append((borrows, -f[0], -f[1], -f[2], -f[3], i, c))
            else:
                short.append((c, key, st, within))
        if fits:
            c = min(fits)[-1]
            self._take(w, (p, c), r)
            return
        for c, key, st, within in short:
            g, u, f = st[0], st[3], st[4]
            if within and any(u[d] + r[d] > g[d] for d in _DIMS):
                why[c] = (self._cluster_reason(r, f, p, BORROWS), "capacity")
                continue
            result = self._slow(w, key, r, u, f, g, st[1], st[1] if w.preemptible else st[2])
            if result is None:
                return  # admitted there, by preempting
            why[c] = result
        # It waits in its project's queue on each of them.
        cause = next((why[c][1] for c in w.clusters if why[c][1] != "never_fits"), "never_fits")
        names = self.s.cluster_names
        reason = "; ".join(f"cluster {names.get(c, c)}: {why[c][0]}" for c in w.clusters)
        primary = None
        for c in w.clusters:
            st = self.states[(p, c)]
            st[8] += 1
            if primary is None or c == w.cluster_id:
                primary = st
            if why[c][1] not in ("no_quota", "never_fits", "blocked") and not st[7]:
                st[7] = True
                if (self.s.now - w.queued_since).total_seconds() > self.s.starvation_after_s:
                    st[6] = (f"waiting behind workload {w.id}, which has waited over "
                             f"{seconds(self.s.starvation_after_s)}")
        assert primary is not None
        self.waiting.append((w.id, primary, reason, primary[8], cause))

    def _take(self, w: QueuedWorkload, key: tuple[int, int], r: tuple[int, int, int, int]) -> None:
        """Admit where it fits as things stand (the fast path of ``run``, for a placement)."""
        c = key[1]
        st = self.states[key]
        u, f, g = st[3], st[4], st[0]
        for d in _DIMS:
            u[d] += r[d]
            f[d] -= r[d]
        self.admissions.append(Admission(w.id, c))
        if c in self.built:
            self.version[c] += 1
            v = self.victims.get(key)
            if v is not None and (v.dirty or any(u[d] > g[d] for d in v.lending)):
                self._refresh(key, v)

    # -- preemption ---------------------------------------------------------------------

    def _slow(self, w, key, r, u, f, g, lim, bound) -> tuple[str, str] | None:  # type: ignore[no-untyped-def]
        """The workload does not fit as things stand: try preemption (rules 5, 6).

        Returns None when it was admitted (victims preempted), else why it waits (reason, cause).
        """
        p, c = key
        tu = list(u)
        tf = list(f)
        own: list[_Victim] = []
        over = [i for i in _DIMS if u[i] + r[i] > bound[i]]
        if over:
            if self.policy.get(p) == POLICY_NEVER:
                return self._quota_reason(p, r, u, g, lim), "quota"
            if c not in self.built:
                self._build(c)
            taken = self._own(key, w.priority, r, tu, tf, bound, over)
            if taken is None:
                return self._quota_reason(p, r, u, g, lim), "quota"
            own = taken
            if any(tf[i] < r[i] for i in _DIMS):
                self._own_for_cluster(key, w.priority, r, tu, tf, own)
        reclaim: list[_Victim] = []
        short = [i for i in _DIMS if tf[i] < r[i]]
        if short:
            if any(tu[i] + r[i] > g[i] for i in _DIMS):
                return self._cluster_reason(r, f, p, BORROWS), "capacity"
            if c not in self.built:
                self._build(c)
            got = self._reclaim(c, p, r, tf, short, memo=not own)
            if got is None:
                return self._cluster_reason(r, f, p, RECLAIM_SHORT), "reclaim"
            reclaim = got
        # commit
        touched = set()
        reason = f"preempted by higher-priority workload {w.id} of project {self.name(p)}"
        for v in own:
            self._remove(v, c)
            touched.add(v[4])
            self.preemptions.append(Preemption(v[1], w.id, reason))
        reason = f"preempted by workload {w.id} of project {self.name(p)} to reclaim its guaranteed quota"
        for v in reclaim:
            self._remove(v, c)
            touched.add(v[4])
            self.preemptions.append(Preemption(v[1], w.id, reason))
        for i in _DIMS:
            u[i] += r[i]
            f[i] -= r[i]
        self.admissions.append(Admission(w.id, c))
        for q in touched:
            self._changed((q, c))
        self._changed(key)
        return None
