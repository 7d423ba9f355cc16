"""What /metrics reports, read from what the database already keeps: workloads from the
kept counts, queues and usage from project_usage, quotas, clusters and their agents'
heartbeats, and counters of events (submissions, admissions, preemptions) read
incrementally by id, so a scrape costs a few small reads however large the tables are.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from sqlalchemy import Connection, func, select

from corral.db.tables import clusters, events, project_usage, projects, quotas, workload_counts, workloads
from corral.domain.resources import RESOURCE_NAMES
from corral.services.clock import utcnow

# The event kinds counted, and the counter each one feeds.
COUNTED_EVENTS = {"submitted": "submissions", "admitted": "admissions", "preempted": "preemptions",
                  "delete_requested": "deletions"}
# An event is counted once this old, so that one whose transaction commits after a newer
# one's (PostgreSQL allocates ids before commit) is not passed over.
EVENT_SETTLE = timedelta(seconds=5)


@dataclass
class Snapshot:
    workloads: list[tuple[str, str, str, str, int]]  # project, cluster, type, status, count
    usage: list[tuple[str, str, dict[str, int], int]]  # project, cluster, used, queued
    quotas: list[tuple[str, str, dict[str, int], dict[str, int | None]]]  # project, cluster, guaranteed, limit
    clusters: list[tuple[str, str, dict[str, int], datetime | None]]  # name, kind, capacity, last heartbeat
    events: dict[tuple[str, str], int]  # (counter, project) -> total
    oldest_pending: list[tuple[str, datetime]]  # project, when its longest-waiting Pending workload was submitted
    now: datetime


@dataclass
class EventTally:
    """Totals of the counted events per project, kept by reading only the events added
    since the last read (by id). The first read counts the whole history once."""

    last_id: int = 0
    totals: dict[tuple[str, str], int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def read(self, conn: Connection, project_names: dict[int, str], now: datetime) -> dict[tuple[str, str], int]:
        with self.lock:
            rows = conn.execute(
                select(events.c.kind, events.c.project_id, func.count(), func.max(events.c.id))
                .where(events.c.id > self.last_id, events.c.at <= now - EVENT_SETTLE,
                       events.c.kind.in_(list(COUNTED_EVENTS)))
                .group_by(events.c.kind, events.c.project_id)
            ).all()
            # Advance past every settled event, counted or not (the newest settled id).
            settled = conn.execute(select(func.max(events.c.id)).where(
                events.c.id > self.last_id, events.c.at <= now - EVENT_SETTLE)).scalar_one()
            for kind, project_id, count, _ in rows:
                key = (COUNTED_EVENTS[kind], project_names.get(project_id, "") if project_id is not None else "")
                self.totals[key] = self.totals.get(key, 0) + int(count)
            if settled is not None:
                self.last_id = int(settled)
            return dict(self.totals)


def snapshot(conn: Connection, tally: EventTally) -> Snapshot:
    now = utcnow()
    project_names = dict(conn.execute(select(projects.c.id, projects.c.name)).all())
    cluster_rows = conn.execute(select(
        clusters.c.id, clusters.c.name, clusters.c.kind, clusters.c.last_heartbeat_at,
        *(clusters.c[f"capacity_{n}"] for n in RESOURCE_NAMES))).all()
    cluster_names = {r.id: r.name for r in cluster_rows}
    counts = conn.execute(select(workload_counts.c.project_id, workload_counts.c.cluster_id, workload_counts.c.type,
                                 workload_counts.c.status, workload_counts.c.count)
                          .where(workload_counts.c.count != 0)).all()
    usage = conn.execute(select(project_usage)).all()
    quota_rows = conn.execute(select(quotas)).all()
    # One probe per project of the (project_id, status, created_at) index.
    oldest = (select(func.min(workloads.c.created_at))
              .where(workloads.c.project_id == projects.c.id, workloads.c.status == "Pending")
              .scalar_subquery())
    oldest_pending = [(name, at) for name, at in conn.execute(select(projects.c.name, oldest)).all()
                      if at is not None]
    return Snapshot(
        workloads=[(project_names.get(p, ""), cluster_names.get(c, ""), t, s, int(n)) for p, c, t, s, n in counts],
        usage=[(project_names.get(u.project_id, ""), cluster_names.get(u.cluster_id, ""),
                {n: int(getattr(u, n)) for n in RESOURCE_NAMES}, int(u.queued)) for u in usage],
        quotas=[(project_names.get(q.project_id, ""), cluster_names.get(q.cluster_id, ""),
                 {n: int(getattr(q, f"guaranteed_{n}")) for n in RESOURCE_NAMES},
                 {n: getattr(q, f"limit_{n}") for n in RESOURCE_NAMES}) for q in quota_rows],
        clusters=[(r.name, r.kind, {n: int(getattr(r, f"capacity_{n}")) for n in RESOURCE_NAMES},
                   r.last_heartbeat_at) for r in cluster_rows],
        events=tally.read(conn, project_names, now),
        oldest_pending=oldest_pending,
        now=now,
    )

