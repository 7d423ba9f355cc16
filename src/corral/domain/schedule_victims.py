"""Preemption victims: who could lose what on a cluster, and picking as few as needed
(rules 5 and 6 of ``domain.scheduling``), mixed into the pass.

Victim lists are built per cluster only when a preemption is first considered there: sorted
once, split per project and per dimension, and merged through per-dimension heaps holding
each borrowing project's next victim, so an attempt looks only at victims that could help.
Running totals (what lower priorities hold per project, what borrowers hold per cluster) make
hopeless attempts fail in O(1).
"""

from __future__ import annotations

import heapq
from itertools import groupby
from operator import attrgetter, itemgetter

from corral.domain.schedule_model import AdmittedWorkload, Snapshot

_DIMS = (0, 1, 2, 3)
_HEAP_SLACK = 64  # stale heap entries tolerated beyond twice the live ones
_BY_PRIORITY = attrgetter("priority")
_BY_ADMITTED = attrgetter("admitted_at")
_BY_ID = attrgetter("id")
_PROJECT = itemgetter(4)  # of a victim tuple

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


class VictimBook:
    """The victim bookkeeping of the pass (mixed into it)."""

    s: Snapshot
    usage: dict[tuple[int, int], list[int]]
    free: dict[int, list[int]]
    q: dict[tuple[int, int], tuple[tuple, tuple, tuple]]
    built: set[int]
    groups: dict[int, list[AdmittedWorkload]] | None
    victims: dict[tuple[int, int], _Victims]
    heaps: dict[int, tuple[list[_Entry], ...]]
    nkeys: dict[int, int]
    reclaimable: dict[int, list[int]]
    removed: set[int]
    version: dict[int, int]
    failed_reclaim: dict[int, tuple[int, set]]

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
