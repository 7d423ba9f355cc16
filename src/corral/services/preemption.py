"""Victims first: a workload admitted by preempting others starts only once their
components are gone from the cluster (quotas.md), so the cluster never runs both.

Admission moves the quota at once (the victims stop counting, the preemptor counts), and
marks each victim with ``preempted_for``. The cluster's agent is told to stop the victims;
it reports each component gone (``removed``). Until every component of every victim is gone
the preemptor is *held*: the agent is not told to run it. The report that removes the last
one writes a ``victims_gone`` event on the preemptor, which is how its agent learns to start
it (dispatch answers events, not polls).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, select, update

from corral.db.tables import components, workloads
from corral.domain.statuses import ComponentStatus, WorkloadStatus
from corral.services import events
from corral.services.clock import utcnow

# A component in one of these states runs nothing on the cluster.
_OVER = (ComponentStatus.DELETED.value, ComponentStatus.COMPLETED.value, ComponentStatus.FAILED.value)
RELEASED_REASON = "admitted to cluster {cluster}; the workloads it preempted are gone; waiting for its agent to start it"
HELD_REASON = "admitted to cluster {cluster}; starts once the workloads it preempted have stopped ({victims})"


def held_reason(cluster: str, victims: Iterable[int]) -> str:
    return HELD_REASON.format(cluster=cluster, victims=", ".join(f"workload {v}" for v in sorted(victims)))


def _live_victims(conn: Connection, preemptor_ids: list[int]) -> dict[int, set[int]]:
    """Preemptor -> its victims that still have a component on the cluster."""
    if not preemptor_ids:
        return {}
    rows = conn.execute(
        select(workloads.c.preempted_for, workloads.c.id).distinct()
        .join(components, components.c.workload_id == workloads.c.id)
        .where(workloads.c.preempted_for.in_(preemptor_ids), components.c.placed.is_(True),
               components.c.status.not_in(_OVER),
               # admitted again since: it holds nothing back any more (whoever clears the mark)
               workloads.c.admitted_at.is_(None))).all()
    live: dict[int, set[int]] = {}
    for r in rows:
        live.setdefault(r.preempted_for, set()).add(r.id)
    return live


def held(conn: Connection, workload_ids: list[int]) -> set[int]:
    """Which of these (admitted) workloads wait for their victims to be gone."""
    return set(_live_victims(conn, workload_ids))


def release_preemptors(conn: Connection, workload_ids: list[int], actor: str) -> list[int]:
    """After reports about these workloads (locked by the caller): those of them that were
    preempted and are now gone let go of their preemptor; a preemptor with no victim left on
    the cluster is released (an event its agent answers, and a reason that says so).
    Returns the released preemptors."""
    victims = conn.execute(select(workloads.c.id, workloads.c.preempted_for).where(
        workloads.c.id.in_(workload_ids), workloads.c.preempted_for.is_not(None))).all()
    if not victims:
        return []
    preemptors = sorted({v.preempted_for for v in victims})
    live = _live_victims(conn, preemptors)
    still = set().union(*live.values()) if live else set()
    gone = [v.id for v in victims if v.id not in still]
    if gone:  # each was locked by the caller
        conn.execute(update(workloads).where(workloads.c.id.in_(gone)).values(preempted_for=None))
    free = [p for p in preemptors if p not in live]
    if not free:
        return []
    now = utcnow()
    # A reason is cosmetic: a preemptor another transaction holds keeps its old one.
    rows = conn.execute(select(workloads.c.id, workloads.c.project_id, workloads.c.cluster_name)
                        .where(workloads.c.id.in_(free), workloads.c.admitted_at.is_not(None),
                               workloads.c.delete_requested_at.is_(None),
                               workloads.c.status == WorkloadStatus.PENDING.value)
                        .order_by(workloads.c.id).with_for_update(skip_locked=True, key_share=True)).all()
    for r in rows:
        conn.execute(update(workloads).where(workloads.c.id == r.id)
                     .values(status_reason=RELEASED_REASON.format(cluster=r.cluster_name)))
    projects = dict(conn.execute(select(workloads.c.id, workloads.c.project_id).where(workloads.c.id.in_(free))).all())
    for p in free:
        events.record(conn, actor=actor, subject_type="workload", subject_id=p, project_id=projects.get(p),
                      kind="victims_gone", message="the workloads it preempted are gone from the cluster", at=now)
    return free
