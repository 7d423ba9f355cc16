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
   alone exceeds the limit, the cluster's capacity or, if non-preemptible, the guarantee)
   waits with a reason that says so.
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
import heapq
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby
from operator import attrgetter, itemgetter

from corral.domain.resources import RESOURCE_NAMES, Limit, Resources, format_bytes, format_millicores

POLICY_NEVER = "never"
POLICY_LOWER_PRIORITY = "lower_priority"
PREEMPTION_POLICIES = (POLICY_NEVER, POLICY_LOWER_PRIORITY)

_INF = float("inf")
_BORROWS, _RECLAIM_SHORT = 1, 2  # why a workload short of cluster capacity waits
_DIMS = (0, 1, 2, 3)
_HEAP_SLACK = 64  # stale heap entries tolerated beyond twice the live ones


@dataclass(frozen=True, slots=True)
class QueuedWorkload:
    id: int
    project_id: int
    cluster_id: int
    priority: int
    request: Resources
    preemptible: bool
    queued_since: datetime  # submission (or requeue) time


@dataclass(frozen=True, slots=True)
class AdmittedWorkload:
    id: int
    project_id: int
    cluster_id: int
    priority: int
    request: Resources
    preemptible: bool
    admitted_at: datetime
    discovered: bool = False  # found on the cluster: counts as usage, never preempted


@dataclass(frozen=True, slots=True)
class ProjectQuota:
    guaranteed: Resources
    limit: Limit

    @classmethod
    def hard(cls, guaranteed: Resources) -> ProjectQuota:
        """The default: limit equal to the guarantee."""
        return cls(guaranteed, Limit.from_resources(guaranteed))


@dataclass(frozen=True)
class Snapshot:
    """Everything one pass decides on. ``queue`` and ``admitted`` must be disjoint."""

    now: datetime
    capacity: dict[int, Resources]  # cluster_id -> capacity
    quotas: dict[tuple[int, int], ProjectQuota]  # (project_id, cluster_id) -> quota; none: nothing allowed
    admitted: list[AdmittedWorkload]  # what holds resources now (usage is derived from these)
    queue: list[QueuedWorkload]  # pending workloads, any order
    preemption_policy: dict[int, str] = field(default_factory=dict)  # project_id -> never | lower_priority
    starvation_after_s: float = 300.0
    project_names: dict[int, str] = field(default_factory=dict)
    # What ``admitted`` adds up to per (project, cluster), when the caller keeps that total
    # itself (an incremental scheduler): the pass then skips summing ``admitted``, which it
    # reads only to pick preemption victims. Must equal the sum of ``admitted``.
    usage: dict[tuple[int, int], tuple[int, int, int, int]] | None = None


@dataclass(frozen=True, slots=True)
class Admission:
    workload_id: int


@dataclass(frozen=True, slots=True)
class Preemption:
    workload_id: int
    for_workload_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class Waiting:
    workload_id: int
    reason: str
    position: int  # 1-based, in its project's queue on its cluster
    queue_length: int
    # Why, in one word: no_quota, never_fits (rule 3; never a queue head), blocked (rule 4),
    # quota (its project's limit or guarantee), capacity (the cluster's, and it would borrow),
    # reclaim (the cluster's, and too little borrowed capacity to take back).
    cause: str = "quota"


@dataclass(frozen=True)
class Decisions:
    """What one pass decided, each list in the order the decisions were taken (queue order);
    a preemption comes before the admission it made room for."""

    admissions: list[Admission]
    preemptions: list[Preemption]
    waiting: list[Waiting]


def queue_key(w: QueuedWorkload) -> tuple:
    """Queue order: priority descending, then queued_since, then id."""
    return (-w.priority, w.queued_since, w.id)


def queue_order(queue: list[QueuedWorkload]) -> list[QueuedWorkload]:
    """``sorted(queue, key=queue_key)``, done as three stable sorts on C-level keys."""
    order = sorted(queue, key=_BY_ID)
    order.sort(key=_BY_QUEUED)
    order.sort(key=_BY_PRIORITY, reverse=True)  # a reverse sort keeps equal items in their order
    return order


_BY_QUEUED = attrgetter("queued_since")
_BY_PRIORITY = attrgetter("priority")
_BY_ADMITTED = attrgetter("admitted_at")
_BY_ID = attrgetter("id")
_PROJECT = itemgetter(4)  # of a victim tuple


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


# --- formatting ------------------------------------------------------------------------


_FORMATTED: dict[tuple[int, float], str] = {}  # the same few amounts recur in most reasons


def _fmt(dim: int, value: float) -> str:
    text = _FORMATTED.get((dim, value))
    if text is None:
        if dim == 0:
            text = str(value)
        elif dim == 1:
            text = format_millicores(value)  # type: ignore[arg-type]
        else:
            text = format_bytes(value)  # type: ignore[arg-type]
        if len(_FORMATTED) > 10_000:
            _FORMATTED.clear()
        _FORMATTED[(dim, value)] = text
    return text


def _amounts(dims: list[int], values) -> str:  # type: ignore[no-untyped-def]
    """"gpu 4" for one dimension, "gpu 4, memory 8Gi" for several."""
    return ", ".join(f"{RESOURCE_NAMES[i]} {_fmt(i, values[i])}" for i in dims)


def _bare(dims: list[int], values) -> str:  # type: ignore[no-untyped-def]
    """"4" for one dimension (already named), else "gpu 4, memory 8Gi"."""
    if len(dims) == 1:
        return _fmt(dims[0], values[dims[0]])
    return _amounts(dims, values)


def _seconds(s: float) -> str:
    return f"{s:g}s"


# --- the pass --------------------------------------------------------------------------

# A victim: (rank in its cluster's victim order, workload id, priority, request, project)
_Victim = tuple[int, int, int, tuple[int, int, int, int], int]
# A heap entry: (rank of a project's next victim in one dimension, project, index in that
# dimension's list, generation, dimension, the project's _Victims); valid while the generation
# is the project's current one for that dimension.
_Entry = tuple


class _Victims:
    """What one project could lose on one cluster: its admitted, preemptible, non-discovered
    workloads (admitted before this pass), in victim order, with running totals."""

    __slots__ = ("usage", "guaranteed", "all", "head", "by_dim", "ptr", "tot", "by_prio", "borrowing", "lending",
                 "pushed", "gen", "dirty")

    def __init__(self, usage: list[int], guaranteed: tuple) -> None:
        self.usage = usage  # the pass's usage list for (project, cluster): updated in place
        self.guaranteed = guaranteed
        self.all: list[_Victim] = []
        self.head = 0  # first not yet preempted in `all`
        self.by_dim: tuple[list[_Victim], ...] = ([], [], [], [])  # those with a positive request in d
        self.ptr = [0, 0, 0, 0]  # first not yet preempted in by_dim[d]
        self.tot = [0, 0, 0, 0]  # summed requests of those not yet preempted, per dimension
        self.by_prio: dict[int, list[int]] | None = None  # the same per priority, when first needed
        self.borrowing = [False, False, False, False]  # above guaranteed, in dimensions with victims
        self.lending: list[int] = []  # dimensions with victims in which it does not borrow
        self.pushed: list[int | None] = [None, None, None, None]  # by_dim index of the valid heap entry
        self.gen = [0, 0, 0, 0]
        self.dirty = False  # something was preempted since the last refresh


class _Pass:
    def __init__(self, s: Snapshot) -> None:
        self.s = s
        self.names = s.project_names
        self.policy = s.preemption_policy
        usage: dict[tuple[int, int], list[int]] = {}
        free: dict[int, list[int]] = {c: list(r.as_tuple()) for c, r in s.capacity.items()}
        self.cap = {c: r.as_tuple() for c, r in s.capacity.items()}
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

    def name(self, project_id: int) -> str:
        return self.names.get(project_id) or f"project {project_id}"

    # -- main loop ----------------------------------------------------------------------

    def run(self) -> Decisions:
        s = self.s
        order = queue_order(s.queue)
        usage, free, quotas, cap = self.usage, self.free, self.q, self.cap
        built, victims, version = self.built, self.victims, self.version
        admissions = self.admissions
        now, starve = s.now, s.starvation_after_s
        zero4 = (0, 0, 0, 0)
        # per (project, cluster): [guaranteed, limit, non-preemptible bound, usage, free, capacity,
        #                          why later ones wait (starving head), head seen, waiting so far]
        states: dict[tuple[int, int], list] = {}
        waiting: list[tuple[int, list, str, int, str]] = []  # (workload id, state, reason, position, cause)
        for w in order:
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
                admissions.append(Admission(w.id))
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
                reason, cause = self._cluster_reason((r0, r1, r2, r3), f, p, _BORROWS), "capacity"
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
                    st[6] = f"waiting behind workload {w.id}, which has waited over {_seconds(starve)}"
        out = [Waiting(wid, reason, pos, st[8], cause) for wid, st, reason, pos, cause in waiting]
        return Decisions(admissions, self.preemptions, out)

    def _never_fits(self, r, preemptible, g, lim, cap, p) -> str:  # type: ignore[no-untyped-def]
        """Why a request can never fit as configured (rule 3)."""
        dims = [i for i in _DIMS if r[i] > lim[i]]
        if dims:
            return (f"request exceeds the limit of project {self.name(p)} on this cluster: "
                    f"{_amounts(dims, r)} requested (limit {_bare(dims, lim)})")
        dims = [] if preemptible else [i for i in _DIMS if r[i] > g[i]]
        if dims:
            return (f"non-preemptible request exceeds the guarantee of project {self.name(p)} on this "
                    f"cluster: {_amounts(dims, r)} requested (guarantee {_bare(dims, g)})")
        dims = [i for i in _DIMS if r[i] > cap[i]]
        return (f"request exceeds the cluster's capacity: {_amounts(dims, r)} requested "
                f"(capacity {_bare(dims, cap)})")

    # -- reasons ------------------------------------------------------------------------

    def _quota_reason(self, p, r, u, g, lim) -> str:  # type: ignore[no-untyped-def]
        # workloads of one project often ask for the same shapes: reuse the text while usage holds
        memo = (p, u[0], u[1], u[2], u[3], r, lim, g)
        text = self.reasons.get(memo)
        if text is None:
            text = self.reasons[memo] = self._format_quota_reason(p, r, u, g, lim)
        return text

    def _format_quota_reason(self, p, r, u, g, lim) -> str:  # type: ignore[no-untyped-def]
        dims = [i for i in _DIMS if u[i] + r[i] > lim[i]]
        if len(dims) == 1:
            i = dims[0]
            bound = _fmt(i, lim[i])
            return (f"waiting for quota: {RESOURCE_NAMES[i]} {_fmt(i, u[i])}/{bound} in use in project "
                    f"{self.name(p)} (limit {bound}), {_fmt(i, r[i])} requested")
        if dims:
            used, limits, wanted = [], [], []
            for i in dims:
                name, bound = RESOURCE_NAMES[i], _fmt(i, lim[i])
                used.append(f"{name} {_fmt(i, u[i])}/{bound}")
                limits.append(f"{name} {bound}")
                wanted.append(f"{name} {_fmt(i, r[i])}")
            return (f"waiting for quota: {', '.join(used)} in use in project {self.name(p)} "
                    f"(limit {', '.join(limits)}), {', '.join(wanted)} requested")
        dims = [i for i in _DIMS if u[i] + r[i] > g[i]]
        left = [max(g[i] - u[i], 0) for i in _DIMS]
        return (f"non-preemptible: needs {_amounts(dims, r)} within the guarantee of project "
                f"{self.name(p)}, {_bare(dims, left)} left")

    def _cluster_reason(self, r, f, p: int, why: int) -> str:  # type: ignore[no-untyped-def]
        memo = (r, f[0], f[1], f[2], f[3], p if why == _BORROWS else None, why)
        text = self.reasons.get(memo)
        if text is None:
            parts = "; ".join(
                f"{RESOURCE_NAMES[i]} {_fmt(i, max(f[i], 0))} free, {_fmt(i, r[i])} requested"
                for i in _DIMS if r[i] > f[i]
            )
            if why == _BORROWS:
                suffix = f" (above the guarantee of project {self.name(p)}: waits for idle capacity)"
            else:
                suffix = " (not enough borrowed capacity to reclaim)"
            text = self.reasons[memo] = f"waiting for cluster capacity: {parts}{suffix}"
        return text

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
                return self._cluster_reason(r, f, p, _BORROWS), "capacity"
            if c not in self.built:
                self._build(c)
            got = self._reclaim(c, p, r, tf, short, memo=not own)
            if got is None:
                return self._cluster_reason(r, f, p, _RECLAIM_SHORT), "reclaim"
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
        self.admissions.append(Admission(w.id))
        for q in touched:
            self._changed((q, c))
        self._changed(key)
        return None

    def _own(self, key, prio, r, tu, tf, bound, over) -> list[_Victim] | None:  # type: ignore[no-untyped-def]
        """Rule 6, first part: own lower-priority victims until usage + request is within bound."""
        k = self.victims.get(key)
        if k is None or k.head >= len(k.all) or k.all[k.head][2] >= prio:
            return None  # nothing of lower priority left (the head may be stale: checked below)
        # cheap bound: everything of lower priority would not be enough
        by_prio = k.by_prio
        if by_prio is None:
            by_prio = k.by_prio = {}
            removed = self.removed
            for v in k.all[k.head:]:
                if v[1] not in removed:
                    a0, a1, a2, a3 = v[3]
                    ps = by_prio.get(v[2])
                    if ps is None:
                        by_prio[v[2]] = [a0, a1, a2, a3]
                    else:
                        ps[0] += a0
                        ps[1] += a1
                        ps[2] += a2
                        ps[3] += a3
        avail = [0, 0, 0, 0]
        for pr, sums in k.by_prio.items():
            if pr < prio:
                for i in _DIMS:
                    avail[i] += sums[i]
        if any(tu[i] - avail[i] + r[i] > bound[i] for i in over):
            return None
        removed = self.removed
        lst = k.all
        taken: list[_Victim] = []
        for j in range(k.head, len(lst)):
            v = lst[j]
            if v[2] >= prio:
                break
            if v[1] in removed:
                continue
            vr = v[3]
            if any(vr[i] > 0 for i in over):
                taken.append(v)
                for i in _DIMS:
                    tu[i] -= vr[i]
                    tf[i] += vr[i]
                over = [i for i in over if tu[i] + r[i] > bound[i]]
                if not over:
                    return taken
        return None

    def _own_for_cluster(self, key, prio, r, tu, tf, taken) -> None:  # type: ignore[no-untyped-def]
        """Rule 6, "if needed": more own lower-priority victims while the cluster is short."""
        k = self.victims[key]
        lst = k.all
        removed = self.removed
        ids = {v[1] for v in taken}
        short = [i for i in _DIMS if tf[i] < r[i]]
        for j in range(k.head, len(lst)):
            if not short:
                return
            v = lst[j]
            if v[2] >= prio:
                return
            if v[1] in removed or v[1] in ids:
                continue
            vr = v[3]
            if any(vr[i] > 0 for i in short):
                taken.append(v)
                for i in _DIMS:
                    tu[i] -= vr[i]
                    tf[i] += vr[i]
                short = [i for i in short if tf[i] < r[i]]

    def _reclaim(self, c, p, r, tf, short, memo) -> list[_Victim] | None:  # type: ignore[no-untyped-def]
        """Rule 5: victims from projects borrowing on cluster c, in victim order.

        Per dimension d the heap holds, for each project borrowing in d, its next victim with a
        positive request in d; the attempt merges the heaps of the dimensions still short, so
        it only ever looks at victims that could help. Popped entries go back unless superseded.
        """
        rc = self.reclaimable[c]
        if any(tf[i] + rc[i] < r[i] for i in short):
            return None
        version = self.version[c]
        if memo:
            failed = self.failed_reclaim.get(c)
            if failed is not None and failed[0] == version and r in failed[1]:
                return None
        heaps = self.heaps[c]
        usage, removed, quotas = self.usage, self.removed, self.q
        pop, push = heapq.heappop, heapq.heappush
        later: list[_Entry] = []  # a project's further victims, for this attempt only
        restore: list[tuple[list[_Entry], _Entry]] = []
        zero = (0, 0, 0, 0)
        tusage: dict[int, list[int]] = {}
        taken: list[_Victim] = []
        taken_ids: set[int] = set()
        while short:
            best = None
            best_heap = None
            for d in short:
                h = heaps[d]
                while h and h[0][3] != h[0][5].gen[d]:
                    pop(h)  # stale: dropped for good
                if h and (best is None or h[0] < best):
                    best, best_heap = h[0], h
            if later and (best is None or later[0] < best):
                e = pop(later)
            elif best_heap is not None:
                e = pop(best_heap)
                restore.append((best_heap, e))
            else:
                for h, e in restore:
                    push(h, e)
                if memo:
                    failed = self.failed_reclaim.get(c)
                    if failed is None or failed[0] != version:
                        failed = self.failed_reclaim[c] = (version, set())
                    failed[1].add(r)
                return None
            _, q, idx, _, d, k = e
            if q == p or d not in short:
                continue
            uq = tusage.get(q)
            if uq is None:
                uq = tusage[q] = list(usage[(q, c)])
                qq = quotas.get((q, c))
                uq.append(qq[0] if qq is not None else zero)  # type: ignore[arg-type]
            if uq[d] <= uq[4][d]:  # type: ignore[operator, index]
                continue  # at or below its guarantee in d: supplies nothing more in d
            lst = k.by_dim[d]
            v = lst[idx]
            if v[1] not in taken_ids:
                vr = v[3]
                taken.append(v)
                taken_ids.add(v[1])
                for i in _DIMS:
                    uq[i] -= vr[i]
                    tf[i] += vr[i]
                short = [i for i in short if tf[i] < r[i]]
            j = idx + 1
            n = len(lst)
            while j < n and lst[j][1] in removed:
                j += 1
            if j < n:
                push(later, (lst[j][0], q, j, -1, d, k))
        for h, e in restore:
            push(h, e)  # entries of projects that lose victims are superseded by _refresh
        return taken

    # -- victim bookkeeping -------------------------------------------------------------

    def _build(self, c: int) -> None:
        if self.groups is None:
            groups: dict[int, list[AdmittedWorkload]] = {}
            for a in self.s.admitted:
                if a.preemptible and not a.discovered:
                    groups.setdefault(a.cluster_id, []).append(a)
            self.groups = groups
        cands = self.groups.pop(c, [])
        # victim order: lowest priority, then most recently admitted, then highest id; as stable
        # sorts on one C-level key each (a reverse sort keeps equal items in their order)
        cands.sort(key=_BY_ID, reverse=True)
        cands.sort(key=_BY_ADMITTED, reverse=True)
        cands.sort(key=_BY_PRIORITY)
        ranked = [
            (rank, a.id, a.priority, (r.gpu, r.cpu, r.memory, r.ephemeral_storage), a.project_id)
            for rank, a in enumerate(cands) for r in (a.request,)
        ]
        ranked.sort(key=_PROJECT)  # stable: each project's victims together, still in victim order
        victims, usage, quotas = self.victims, self.usage, self.q
        zero = (0, 0, 0, 0)
        keys = 0
        # nothing on this cluster has been preempted yet: every list starts at its head
        heaps: tuple[list[_Entry], ...] = ([], [], [], [])
        rc = [0, 0, 0, 0]
        for project, group in groupby(ranked, _PROJECT):
            key = (project, c)
            qq = quotas.get(key)
            k = victims[key] = _Victims(usage[key], qq[0] if qq is not None else zero)
            keys += 1
            lst = k.all = list(group)
            u, g = k.usage, k.guaranteed
            for d in _DIMS:
                amounts = [v[3][d] for v in lst]
                tot = k.tot[d] = sum(amounts)
                if tot:
                    by_dim = k.by_dim[d]
                    by_dim.extend([v for v, x in zip(lst, amounts) if x])
                    if u[d] > g[d]:
                        k.borrowing[d] = True
                        k.pushed[d] = 0
                        heaps[d].append((by_dim[0][0], key[0], 0, 0, d, k))
                    else:
                        k.lending.append(d)
            if k.borrowing[0] or k.borrowing[1] or k.borrowing[2] or k.borrowing[3]:
                for d in _DIMS:
                    rc[d] += k.tot[d]
        for h in heaps:
            heapq.heapify(h)
        self.heaps[c] = heaps
        self.reclaimable[c] = rc
        self.nkeys[c] = keys
        self.version[c] = 0
        self.built.add(c)

    def _remove(self, v: _Victim, c: int) -> None:
        key = (v[4], c)
        k = self.victims[key]
        vr = v[3]
        self.removed.add(v[1])
        k.dirty = True
        t = k.tot
        ps = k.by_prio[v[2]] if k.by_prio is not None else [0, 0, 0, 0]
        u = self.usage[key]
        f = self.free[c]
        rc = self.reclaimable[c]
        b = k.borrowing
        counted = b[0] or b[1] or b[2] or b[3]
        for i in _DIMS:
            t[i] -= vr[i]
            ps[i] -= vr[i]
            u[i] -= vr[i]
            f[i] += vr[i]
            if counted:
                rc[i] -= vr[i]

    def _changed(self, key: tuple[int, int]) -> None:
        c = key[1]
        self.version[c] += 1
        k = self.victims.get(key)
        if k is not None:
            self._refresh(key, k)

    def _refresh(self, key: tuple[int, int], k: _Victims) -> None:
        """Bring the heap entries, borrowing flags and reclaimable totals of (project, cluster)
        up to date after its usage changed or some of its workloads were preempted."""
        c = key[1]
        u, g = k.usage, k.guaranteed
        dirty = k.dirty
        removed = self.removed
        if dirty:
            lst, j, n = k.all, k.head, len(k.all)
            while j < n and lst[j][1] in removed:
                j += 1
            k.head = j
            k.dirty = False
        heaps = self.heaps[c]
        lending = k.lending
        lending.clear()
        b = k.borrowing
        counted = b[0] or b[1] or b[2] or b[3]
        for d in _DIMS:
            lst = k.by_dim[d]
            if not lst:
                continue
            borrowing = u[d] > g[d]
            if not borrowing:
                lending.append(d)
            b[d] = borrowing
            j = k.ptr[d]
            n = len(lst)
            if dirty:
                while j < n and lst[j][1] in removed:
                    j += 1
                k.ptr[d] = j
            want = j if borrowing and j < n else None
            if want != k.pushed[d]:
                k.gen[d] += 1
                k.pushed[d] = want
                h = heaps[d]
                if want is not None:
                    heapq.heappush(h, (lst[j][0], key[0], j, k.gen[d], d, k))
                if len(h) > 2 * self.nkeys[c] + _HEAP_SLACK:  # mostly stale entries: compact
                    h[:] = [e for e in h if e[3] == e[5].gen[d]]
                    heapq.heapify(h)
        now_counted = b[0] or b[1] or b[2] or b[3]
        if now_counted != counted:
            rc, t = self.reclaimable[c], k.tot
            sign = 1 if now_counted else -1
            for d in _DIMS:
                rc[d] += sign * t[d]
