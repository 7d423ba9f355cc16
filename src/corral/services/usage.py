"""Use over time (issue 14): what running components use (sampled by the agents), each
project's quota use per cluster and each cluster's allocation (sampled by the server).

Storage is bounded. Component samples older than ``usage_retention_days`` go as samples
arrive, and each component keeps about ``usage_max_samples_per_component`` (its newest):
checked for a component that sends many at once, and now and then for the others (see
``record_usage``). Quota and allocation samples are taken when a cluster's agent sends a heartbeat
and the previous sample of that cluster is ``history_interval_s`` old (a cluster whose
agent is silent leaves a gap: nothing is known then), and kept ``history_retention_days``.

Series are read with a time range (default: the last ``DEFAULT_RANGE``), at most
``MAX_POINTS`` points per series (a longer one is bucketed, see ``_series``), authorised
as the rest: a member sees the workloads and projects of their projects, allocation is
for administrators.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select

from corral.db.tables import (
    allocation_history,
    clusters,
    component_usage,
    components,
    project_usage,
    quota_history,
    quotas,
    workloads,
)
from corral.domain.resources import cores
from corral.services import projects as project_service
from corral.services.clock import utcnow
from corral.services.errors import InvalidInput, NotFound
from corral.services.principal import Principal
from corral.services.workloads import visible_workload

CAP_CHECK_BATCH = 10
CAP_CHECK_ONE_IN = 50
DEFAULT_RANGE = timedelta(hours=6)
MAX_RANGE = timedelta(days=90)
MAX_POINTS = 2000
_DIMS = ("gpu", "cpu", "memory")


@dataclass(frozen=True)
class Retention:
    usage_days: float = 7.0
    max_samples_per_component: int = 61_000  # 7 days at 10 s
    history_interval_s: float = 60.0
    history_days: float = 30.0

    @classmethod
    def of(cls, settings: Any) -> Retention:
        return cls(settings.usage_retention_days, settings.usage_max_samples_per_component,
                   settings.history_interval_s, settings.history_retention_days)


@dataclass(frozen=True)
class Sample:
    component_id: int
    at: datetime
    cpu: int | None
    memory: int | None
    gpu_utilization: float | None
    gpu_memory: int | None


# --- writing ------------------------------------------------------------------------------

def record_usage(conn: Connection, cluster_id: int, samples: Sequence[Sample], retention: Retention) -> dict[str, int]:
    """Store the samples of components this cluster runs (others are ignored: an agent
    speaks for its own cluster only) and prune what the retention drops."""
    if not samples:
        return {"accepted": 0}
    ids = sorted({s.component_id for s in samples})
    owner = set(conn.execute(
        select(components.c.id)
        .join(workloads, workloads.c.id == components.c.workload_id)
        .where(components.c.id.in_(ids), workloads.c.cluster_id == cluster_id)).scalars())
    now = utcnow()  # a sample from the future is clamped to the server's clock (security.md)
    rows = [{"component_id": s.component_id, "at": min(s.at, now), "cpu": s.cpu,
             "memory": s.memory, "gpu_utilization": s.gpu_utilization, "gpu_memory": s.gpu_memory}
            for s in samples if s.component_id in owner]
    if rows:
        conn.execute(insert(component_usage), rows)
        # The cap's check reads past max_samples_per_component index entries: done for a
        # component sending many at once, else for about one post in CAP_CHECK_ONE_IN (an
        # agent sends one sample per component every 10 s, so the overshoot stays small).
        per_component = Counter(r["component_id"] for r in rows)
        check = [cid for cid, n in per_component.items()
                 if n > CAP_CHECK_BATCH or random.random() * CAP_CHECK_ONE_IN < 1]
        prune_usage(conn, retention, component_ids=sorted(check))
    return {"accepted": len(rows)}


def prune_usage(conn: Connection, retention: Retention, component_ids: Sequence[int] | None = None,
                now: datetime | None = None) -> int:
    """Drop samples past the retention: older than its days (everyone's), and beyond each
    named component's newest ``max_samples_per_component``."""
    cutoff = (now or utcnow()) - timedelta(days=retention.usage_days)
    dropped = conn.execute(delete(component_usage).where(component_usage.c.at < cutoff)).rowcount or 0
    for cid in component_ids or ():
        # The newest sample past the cap; it and everything older go (one indexed read each).
        edge = conn.execute(select(component_usage.c.at).where(component_usage.c.component_id == cid)
                            .order_by(component_usage.c.at.desc(), component_usage.c.id.desc())
                            .offset(retention.max_samples_per_component).limit(1)).scalar()
        if edge is not None:
            dropped += conn.execute(delete(component_usage).where(
                component_usage.c.component_id == cid, component_usage.c.at <= edge)).rowcount or 0
    return dropped


def record_history_if_due(conn: Connection, cluster_id: int, retention: Retention,
                          now: datetime | None = None) -> bool:
    """On a cluster's heartbeat: its allocation and its projects' quota use, when the last
    sample is ``history_interval_s`` old; old samples go. Whether it sampled."""
    now = now or utcnow()
    last = conn.execute(select(func.max(allocation_history.c.at))
                        .where(allocation_history.c.cluster_id == cluster_id)).scalar()
    if last is not None and (now - last).total_seconds() < retention.history_interval_s:
        return False
    cluster = conn.execute(select(clusters.c.capacity_gpu, clusters.c.capacity_cpu, clusters.c.capacity_memory)
                           .where(clusters.c.id == cluster_id)).one()
    rows = conn.execute(
        select(quotas.c.project_id, *(quotas.c[f"guaranteed_{d}"] for d in _DIMS),
               *(quotas.c[f"limit_{d}"] for d in _DIMS), *(project_usage.c[d] for d in _DIMS))
        .outerjoin(project_usage, (project_usage.c.project_id == quotas.c.project_id)
                   & (project_usage.c.cluster_id == quotas.c.cluster_id))
        .where(quotas.c.cluster_id == cluster_id)).all()
    quota_rows = []
    for row in rows:
        project_id, g, lim, used = row[0], row[1:4], row[4:7], row[7:10]
        quota_rows.append({"project_id": project_id, "cluster_id": cluster_id, "at": now,
                           **{f"used_{d}": int(u or 0) for d, u in zip(_DIMS, used)},
                           **{f"guaranteed_{d}": int(v) for d, v in zip(_DIMS, g)},
                           **{f"limit_{d}": v for d, v in zip(_DIMS, lim)}})
    # What admitted workloads hold on the cluster: every project's, quota or not.
    held = conn.execute(select(*(func.coalesce(func.sum(project_usage.c[d]), 0) for d in _DIMS))
                        .where(project_usage.c.cluster_id == cluster_id)).one()
    conn.execute(insert(allocation_history).values(
        cluster_id=cluster_id, at=now, **{f"capacity_{d}": int(v) for d, v in zip(_DIMS, cluster)},
        **{f"allocated_{d}": int(v) for d, v in zip(_DIMS, held)},
        **{f"guaranteed_{d}": sum(r[f"guaranteed_{d}"] for r in quota_rows) for d in _DIMS}))
    if quota_rows:
        conn.execute(insert(quota_history), quota_rows)
    cutoff = now - timedelta(days=retention.history_days)
    conn.execute(delete(allocation_history).where(allocation_history.c.cluster_id == cluster_id,
                                                  allocation_history.c.at < cutoff))
    conn.execute(delete(quota_history).where(quota_history.c.cluster_id == cluster_id, quota_history.c.at < cutoff))
    prune_usage(conn, retention, now=now)  # components that stopped sending age out here
    return True


# --- reading ------------------------------------------------------------------------------

def time_range(since: datetime | None, until: datetime | None, now: datetime | None = None
               ) -> tuple[datetime, datetime]:
    """The range asked for (default: the last DEFAULT_RANGE up to now); a clear error for
    a backwards or too long one."""
    until = until or now or utcnow()
    if since is None:
        try:
            since = until - DEFAULT_RANGE
        except OverflowError:  # until in the first hours of year 1
            raise InvalidInput("until is too early", field="until") from None
    if since.tzinfo is None or until.tzinfo is None:
        raise InvalidInput("give since and until with a time zone (2026-12-06T17:00:00Z)", field="since")
    if since >= until:
        raise InvalidInput("since must be before until", field="since")
    if until - since > MAX_RANGE:
        raise InvalidInput(f"a range of at most {MAX_RANGE.days} days", field="since")
    return since, until


def _series(conn: Connection, query: Any, at: Any, since: datetime, until: datetime, *,
            mean: bool) -> tuple[int, list[dict[str, Any]]]:
    """(samples in the range, at most MAX_POINTS points): past that many, the range is cut
    into MAX_POINTS equal buckets, each one point: the mean of its samples (``mean``: usage
    rates) or its last sample (quota and allocation: states)."""
    rows = [dict(r) for r in conn.execute(query.order_by(at)).mappings()]
    if len(rows) <= MAX_POINTS:
        return len(rows), rows
    width = (until - since) / MAX_POINTS
    buckets: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        buckets.setdefault(int((row["at"] - since) / width), []).append(row)
    points = []
    for _, group in sorted(buckets.items()):
        point = dict(group[-1])
        if mean:
            for key in point.keys() - {"at"}:
                values = [g[key] for g in group if g[key] is not None]
                average = sum(values) / len(values) if values else None
                point[key] = average if average is None or isinstance(values[0], float) else round(average)
        points.append(point)
    return len(rows), points


def _shown(dimension: str, values: list[Any]) -> list[Any]:
    """A series as the API shows it: CPU in cores (stored in millicores), None kept."""
    if dimension != "cpu":
        return values
    return [None if v is None else cores(v) for v in values]


def _t(at: datetime) -> float:
    return round(at.timestamp(), 3)


def workload_usage(conn: Connection, principal: Principal, workload_id: int, since: datetime | None = None,
                   until: datetime | None = None) -> dict[str, Any]:
    """Per component of a workload the caller may see: samples in the range, as columns
    (t: Unix seconds; cpu: cores; memory, gpu_memory: bytes; gpu_utilization: %)."""
    visible_workload(conn, principal, workload_id)  # NotFound for another project's
    since, until = time_range(since, until)
    out = []
    for cid, kind, name in conn.execute(select(components.c.id, components.c.kind, components.c.name)
                                        .where(components.c.workload_id == workload_id)
                                        .order_by(components.c.id)).all():
        c = component_usage.c
        count, rows = _series(conn, select(c.at, c.cpu, c.memory, c.gpu_utilization, c.gpu_memory)
                              .where(c.component_id == cid, c.at >= since, c.at <= until), c.at, since, until,
                              mean=True)
        out.append({"component_id": cid, "kind": kind, "name": name, "samples": count,
                    "t": [_t(r["at"]) for r in rows],
                    "cpu": _shown("cpu", [r["cpu"] for r in rows]),
                    **{k: [r[k] for r in rows] for k in ("memory", "gpu_utilization", "gpu_memory")}})
    return {"workload_id": workload_id, "since": since, "until": until, "components": out}


def project_quota_history(conn: Connection, principal: Principal, project_name: str,
                          since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
    """Per cluster the project has (or had) a quota on: used, borrowed (used beyond the
    guarantee), guaranteed and limit (None: unbounded) per dimension, over time."""
    project = project_service.resolve(conn, principal, project_name)  # NotFound for a non-member
    since, until = time_range(since, until)
    h = quota_history.c
    cluster_rows = conn.execute(select(clusters.c.id, clusters.c.name)
                                .where(clusters.c.id.in_(select(h.cluster_id).where(h.project_id == project["id"])))
                                .order_by(clusters.c.name)).all()
    out = []
    for cluster_id, cluster_name in cluster_rows:
        count, rows = _series(conn, select(quota_history).where(
            h.project_id == project["id"], h.cluster_id == cluster_id, h.at >= since, h.at <= until), h.at,
            since, until, mean=False)
        series: dict[str, Any] = {"cluster": cluster_name, "samples": count, "t": [_t(r["at"]) for r in rows]}
        for d in _DIMS:
            used = [r[f"used_{d}"] for r in rows]
            guaranteed = [r[f"guaranteed_{d}"] for r in rows]
            series[d] = {"used": _shown(d, used), "guaranteed": _shown(d, guaranteed),
                         "borrowed": _shown(d, [max(0, u - g) for u, g in zip(used, guaranteed)]),
                         "limit": _shown(d, [r[f"limit_{d}"] for r in rows])}
        out.append(series)
    return {"project": project["name"], "since": since, "until": until, "clusters": out}


def cluster_allocation_history(conn: Connection, principal: Principal, cluster_name: str,
                               since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
    """A cluster's capacity, what admitted workloads hold and what projects are
    guaranteed, per dimension over time (administrators)."""
    principal.require_admin()
    cluster_id = conn.execute(select(clusters.c.id).where(clusters.c.name == cluster_name)).scalar()
    if cluster_id is None:
        raise NotFound(f"cluster {cluster_name!r} not found", field="cluster")
    since, until = time_range(since, until)
    h = allocation_history.c
    count, rows = _series(conn, select(allocation_history).where(h.cluster_id == cluster_id, h.at >= since,
                                                                 h.at <= until), h.at, since, until, mean=False)
    out: dict[str, Any] = {"cluster": cluster_name, "since": since, "until": until, "samples": count,
                           "t": [_t(r["at"]) for r in rows]}
    for d in _DIMS:
        out[d] = {k: _shown(d, [r[f"{k}_{d}"] for r in rows]) for k in ("capacity", "allocated", "guaranteed")}
    return out

