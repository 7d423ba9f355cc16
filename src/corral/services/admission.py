"""Admission: decide (``domain.scheduling.schedule``) and persist admissions, preemptions
and waiting reasons. The scheduler's memory lives in ``admission_memory``, the writing of
what a pass decided in ``admission_write``, the bulk statements in ``admission_sql``.

An ``Admitter`` keeps the scheduler's picture of the world in memory (what waits, what
holds resources, quotas, capacity) and brings it up to date at the start of every pass by
reading the event log since the last pass: every change that matters to admission writes
an event (submission, status change, deletion, quota, capacity, project settings), so a
pass reads a few rows instead of the whole queue.

What a pass decides on:

* A cluster is decided in full (its whole queue) when something may have made room there
  or changed the rules: a workload holding resources finished or was preempted elsewhere,
  a queued one left (its queue head may change), its quota, capacity or a project's
  preemption policy changed; and, on a timer, when a queue head crosses the
  anti-starvation threshold, when a waiting workload could now preempt one admitted after
  it (``preemption_delay_s`` later, so that a burst of admissions shares one such pass),
  and, when the scheduler is idle, to refresh waiting reasons.
* Otherwise only what is new there (submitted or requeued since the last pass), plus the
  head of each queue they join (it may block them, rule 4 of the scheduling module), is
  decided, against the current usage. Nothing else waiting could be admitted: usage only
  grew since those were last decided. ``tests/integration/test_admission_replicas.py``
  checks this against full passes over the same database.

Safety does not rest on the memory being right. A pass runs in one write transaction that
first locks every cluster row, so passes of several control-plane replicas on one
PostgreSQL run one after another, and before committing it checks, in that transaction,
the kept usage (``project_usage``) of what it admitted into against quota limits and
cluster capacity; any disagreement rolls the pass back and reloads everything from the
database. (On SQLite the write transaction is exclusive in the first place.)

Waiting reasons carry numbers that change as usage does; they are written when they
change, at most ``reason_budget`` per pass (heads of queues first), the rest in later
passes, so one pass over 100,000 waiting workloads never writes them all at once. The
budget also shrinks to what fits in ``REASON_PASS_S`` at the rate reasons were last
written (PostgreSQL writes one in ~0.2 ms, SQLite faster): a submission that arrives while
the backlog is written waits for that short pass, not for 500 reasons.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, func, select

from corral.db.engine import write_tx
from corral.db.tables import clusters, events
from corral.domain.scheduling import (
    AdmittedWorkload,
    Decisions,
    QueuedWorkload,
    Snapshot,
    queue_key,
    schedule,
)
from corral.services.clock import utcnow
from corral.services.admission_write import AdmissionWrites
from corral.services.admission_write import GuardViolation, RaceLost  # noqa: F401 - callers catch them from here
from corral.services.principal import SYSTEM

PASS_EVENT_KINDS = ("waiting", "admitted", "preempted")  # what a pass writes: no news to the next one
IDLE_S = 2.0  # no newcomer for this long: time to refresh stale waiting reasons


@dataclass(frozen=True)
class PassResult:
    admitted: int
    preempted: int
    waiting: int  # decided this pass and still waiting
    reasons_left: int = 0  # changed waiting reasons not yet written (later passes write them)
    full_clusters: int = 0  # clusters decided in full this pass


class Admitter(AdmissionWrites):
    def __init__(self, engine: Engine, *, starvation_after_s: float = 300.0, actor: str = SYSTEM,
                 reason_budget: int | None = 500, preemption_delay_s: float = 5.0,
                 refresh_reasons_every_s: float = 30.0, refresh_reasons_max_s: float = 300.0,
                 reload_every_s: float = 600.0, unhealthy_after_s: float = 90.0) -> None:
        self.engine = engine
        self.unhealthy_after_s = unhealthy_after_s  # a cluster silent this long is not a placement
        self.starvation_after_s = starvation_after_s
        self.actor = actor
        self.reason_budget = reason_budget
        self.reason_cost_s = 0.0  # seconds per reason written, as last measured
        self.preemption_delay_s = preemption_delay_s
        self.refresh_reasons_every_s = refresh_reasons_every_s
        self.refresh_reasons_max_s = refresh_reasons_max_s
        self.reload_every_s = reload_every_s
        self.postgres = engine.dialect.name == "postgresql"
        self.loaded = False

    # -- the pass ----------------------------------------------------------------------

    def wants_pass(self) -> bool:
        """Work left from earlier passes (reasons to write, a cluster due on a timer)."""
        if not self.loaded:
            return True
        mono = time.monotonic()
        return bool(self.reasons_to_write or self.new or self.dirty or mono >= self.health_due
                    or any(at <= mono for at in self.due.values()) or mono >= self.reload_at
                    or self._stale_due(mono) is not None)

    def run_pass(self) -> PassResult:
        try:
            with write_tx(self.engine) as conn:
                # Serialise passes across replicas (PostgreSQL); decide on committed state only.
                # NO KEY UPDATE: writers that merely reference a cluster (foreign-key checks
                # take KEY SHARE) never wait for a pass, so they cannot deadlock with it.
                conn.execute(select(clusters.c.id).order_by(clusters.c.id).with_for_update(key_share=True)).all()
                if not self.loaded or time.monotonic() >= self.reload_at:
                    self._load(conn)
                else:
                    self._catch_up(conn)
                    if time.monotonic() >= self.health_due:  # a cluster may have fallen silent
                        self._load_config(conn)
                return self._decide_and_write(conn)
        except BaseException:
            self.loaded = False  # whatever the memory holds now may disagree with the database
            raise

    # -- deciding ----------------------------------------------------------------------

    def _decide_and_write(self, conn: Connection) -> PassResult:
        now = utcnow()
        mono = time.monotonic()
        full = {c for c in self.dirty if c in self.capacity}
        full |= {c for c, at in self.due.items() if at <= mono and c in self.capacity}
        if not full and not self.new:
            refresh = self._stale_due(mono)
            if refresh is not None and refresh in self.capacity:
                full.add(refresh)
        ids: set[int] = set()
        for c in full:
            ids.update(self.queued_on.get(c, ()))
        queue = [self.queued[i] for i in ids]
        partial = [self.queued[i] for i in self.new if i not in ids]
        extra_heads = {}
        for w in partial:
            head = self.heads.get((w.project_id, w.cluster_id))
            if head is not None and head.id not in self.new and head.id in self.queued:
                extra_heads[head.id] = head
        queue.extend(partial)
        queue.extend(extra_heads.values())
        involved = {c for w in queue for c in (w.clusters or (w.cluster_id,))} | full
        decisions = Decisions([], [], [])
        if queue:
            admitted = [a for c in involved for a in self.admitted.get(c, {}).values()]
            usage = {key: tuple(u) for key, u in self.usage.items() if key[1] in involved}
            snapshot = Snapshot(
                now=now, capacity={c: self.capacity[c] for c in involved if c in self.capacity},
                quotas={k: q for k, q in self.quotas.items() if k[1] in involved},
                admitted=admitted, queue=queue, preemption_policy=self.policy,
                starvation_after_s=self.starvation_after_s, project_names=self.names, usage=usage,
                cluster_names=self.cluster_names,
                nodes={c: self.node_capacity[c] for c in involved if c in self.node_capacity})
            decisions = schedule(snapshot)
        self._write(conn, decisions, now)
        self._remember(decisions, full, {w.id for w in partial}, now, mono)
        reasons_left = self._write_reasons(conn, {w.id for w in partial} if partial and not full else None)
        if self.postgres is False:
            # The write transaction is exclusive: everything up to the newest id is seen
            # (this pass's own events included), so the next catch-up skips them.
            self.cursor = conn.execute(select(func.coalesce(func.max(events.c.id), 0))).scalar_one()
        return PassResult(len(decisions.admissions), len(decisions.preemptions), len(decisions.waiting),
                          reasons_left, len(full))

    def _remember(self, d: Decisions, full: set[int], partial: set[int], now: datetime, mono: float) -> None:
        """Bring the memory in line with what this pass decided (and wrote)."""
        for p in d.preemptions:
            since = self.since.get(p.workload_id, now)
            a = self._release(p.workload_id)
            self.marked_victims.add(a.id)
            # Back in the queue of the cluster it ran on (it stays there: its components
            # are still being removed by that cluster's agent).
            self.unnamed.discard(a.id)
            self._enqueue(QueuedWorkload(a.id, a.project_id, a.cluster_id, a.priority, a.request, a.preemptible,
                                         since, units=a.units, spread=a.spread))
            self.stored_reason[a.id] = hash(p.reason)
        admitted_here: list[AdmittedWorkload] = []
        for adm in d.admissions:
            w = self._unqueue(adm.workload_id)
            a = AdmittedWorkload(w.id, w.project_id, adm.cluster_id or w.cluster_id, w.priority, w.request,
                                 w.preemptible, now, units=w.units, spread=w.spread)
            self._hold(a, w.queued_since)
            admitted_here.append(a)
        preempted_now = {p.workload_id for p in d.preemptions}
        self.new &= preempted_now  # requeued ones are decided next pass; the rest were decided now
        for c in full:
            self.dirty.discard(c)
            self.due.pop(c, None)
            self.reasons_fresh_at[c] = mono
            for key in [k for k in self.heads if k[1] == c]:
                del self.heads[key]
            for key in [k for k in self.quota_waiters if k[1] == c]:
                del self.quota_waiters[key]
            self.reclaimers.discard(c)
        # A cluster with preemptions is decided again in full: victims free whole requests,
        # often more than the preemptor takes, and a pass decides each workload once, in
        # queue order, so what a later preemption freed was not offered to those before it.
        self.dirty |= {self.admitted_on.get(p.for_workload_id) for p in d.preemptions} - {None}
        # Newcomers that wait, per queue, in queue order: each is behind the older ones of its
        # priority or a higher one, and behind the newcomers before it.
        arrived: dict[tuple[int, int], list[QueuedWorkload]] = {}
        for wt in d.waiting:
            w = self.queued.get(wt.workload_id)
            if w is not None and w.id in partial and w.cluster_id not in full:
                arrived.setdefault((w.project_id, w.cluster_id), []).append(w)
        rank: dict[int, int] = {}
        for key, group in arrived.items():
            group.sort(key=queue_key)
            rank.update((w.id, i) for i, w in enumerate(group))
            counts = self.waiting_count.get(key, {})
            for w in group:
                older_behind = sum(n for prio, n in counts.items() if prio < w.priority) - sum(
                    1 for x in group if x.priority < w.priority)
                if older_behind > 0:
                    self.dirty.add(key[1])  # it went ahead of older ones: their places change
        for wt in d.waiting:
            w = self.queued.get(wt.workload_id)
            if w is None:
                continue
            key = (w.project_id, w.cluster_id)
            if w.cluster_id in full:
                position, length = wt.position, wt.queue_length
            elif w.id not in partial:
                position = length = 0  # a queue head decided again for those behind it: reason kept
            else:
                counts = self.waiting_count.get(key, {})
                group = arrived[key]
                older_ahead = sum(n for prio, n in counts.items() if prio >= w.priority) - sum(
                    1 for x in group if x.priority >= w.priority)
                position = older_ahead + rank[w.id] + 1
                length = sum(counts.values())
            reason = f"{wt.reason}; position {position} of {length}"
            if w.id in self.unnamed and w.project_id in self.skipped:
                reason += f" (not placed on {self.skipped[w.project_id]})"
            if not length:
                pass
            elif self.stored_reason.get(w.id) != hash(reason):
                self.reasons_to_write[w.id] = (reason, wt.cause)
            else:
                self.reasons_to_write.pop(w.id, None)
            if wt.cause in ("never_fits", "no_quota"):
                continue
            head = self.heads.get(key)
            if head is None or queue_key(w) < queue_key(head):
                # A head that starts starving later needs no pass of its own: it only keeps
                # those behind it from being admitted, and every pass that could admit one of
                # them (a newcomer's, or a full one) decides the head again first.
                self.heads[key] = w
            if wt.cause == "quota" and self.policy.get(w.project_id) != "never":
                self.quota_waiters[key] = max(self.quota_waiters.get(key, w.priority), w.priority)
            elif wt.cause == "reclaim":
                self.reclaimers.add(w.cluster_id)
        # Someone waiting may be able to preempt what was just admitted after it: decide its
        # cluster in full shortly (admissions in one burst share that pass).
        for a in admitted_here:
            if not a.preemptible:
                continue
            key = (a.project_id, a.cluster_id)
            could = self.quota_waiters.get(key, a.priority) > a.priority
            if not could and a.cluster_id in self.reclaimers:
                q = self.quotas.get(key)
                u = self.usage.get(key)
                could = q is not None and u is not None and any(x > y for x, y in zip(u, q.guaranteed.as_tuple()))
            if could:
                at = mono + self.preemption_delay_s
                self.due[a.cluster_id] = min(self.due.get(a.cluster_id, at), at)
        # Admissions decided outside a full pass leave the numbers in the cluster's waiting
        # reasons behind: refreshed by a full pass of the cluster when the scheduler is idle
        # (see _stale_due), so a refresh never delays a submission.
        for a in admitted_here:
            if a.cluster_id not in full:
                self.stale.add(a.cluster_id)
        self.stale -= full
        if partial:
            self.busy_at = mono

    def _stale_due(self, mono: float) -> int | None:
        """One cluster whose waiting reasons are due for a refresh: after
        ``refresh_reasons_every_s``, once nothing was submitted for ``IDLE_S`` (or, under
        endless load, after ``refresh_reasons_max_s`` anyway)."""
        idle = mono - self.busy_at >= IDLE_S
        for c in sorted(self.stale, key=lambda c: self.reasons_fresh_at.get(c, 0.0)):
            age = mono - self.reasons_fresh_at.get(c, 0.0)
            if age >= self.refresh_reasons_every_s and (idle or age >= self.refresh_reasons_max_s):
                return c
        return None


def decide_afresh(engine: Engine, *, starvation_after_s: float = 300.0) -> Decisions:
    """What a full pass would decide now, from a fresh read of the database; writes nothing."""
    fresh = Admitter(engine, starvation_after_s=starvation_after_s)
    with engine.connect() as conn:
        fresh._load(conn)
        conn.rollback()
    return schedule(Snapshot(
        now=utcnow(), capacity=fresh.capacity, quotas=fresh.quotas,
        admitted=[a for held in fresh.admitted.values() for a in held.values()], queue=list(fresh.queued.values()),
        preemption_policy=fresh.policy, starvation_after_s=starvation_after_s, project_names=fresh.names,
        nodes=fresh.node_capacity))


def run_pass(engine: Engine, *, starvation_after_s: float = 300.0, actor: str = SYSTEM) -> PassResult:
    """One full pass from a fresh read of the database, every reason written (tests, tools)."""
    return Admitter(engine, starvation_after_s=starvation_after_s, actor=actor, reason_budget=None).run_pass()
