"""Quotas per project per cluster: guaranteed and limit vectors (shared/spec/quotas.md)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from corral.db.tables import clusters, project_usage, projects, quotas
from corral.domain.resources import RESOURCE_NAMES, Limit, Resources, format_quantity, format_vector
from corral.services import events
from corral.services.clock import utcnow
from corral.services.clusters import capacity_of
from corral.services.errors import InvalidInput, NotFound
from corral.services.principal import Principal
from corral.services import projects as project_service

_G = [quotas.c[f"guaranteed_{n}"] for n in RESOURCE_NAMES]
_L = [quotas.c[f"limit_{n}"] for n in RESOURCE_NAMES]


def guaranteed_of(row: Any) -> Resources:
    return Resources(*(getattr(row, f"guaranteed_{n}") for n in RESOURCE_NAMES))


def limit_of(row: Any) -> Limit:
    return Limit(*(getattr(row, f"limit_{n}") for n in RESOURCE_NAMES))


def _usage_of(row: Any) -> Resources:
    if row is None or row.gpu is None:
        return Resources()
    return Resources(row.gpu, row.cpu, row.memory, row.ephemeral_storage)


def quota_view(row: Any) -> dict[str, Any]:
    """Guaranteed, limit, used, borrowed, available and queued for one quota row."""
    guaranteed, limit, used = guaranteed_of(row), limit_of(row), _usage_of(row)
    borrowed = Resources(*(max(0, u - g) for u, g in zip(used.as_tuple(), guaranteed.as_tuple())))
    available = {
        n: None if getattr(limit, n) is None else max(0, getattr(limit, n) - getattr(used, n))
        for n in RESOURCE_NAMES
    }
    return {
        "project": row.project_name,
        "cluster": row.cluster_name,
        "guaranteed": guaranteed.as_dict(),
        "limit": limit.as_dict(),
        "used": used.as_dict(),
        "borrowed": borrowed.as_dict(),
        "available": available,
        "over_limit": limit.exceeded_dimensions(used),
        "queued": row.queued or 0,
        "updated_at": row.updated_at,
    }


def _quota_query() -> Any:
    return (
        select(
            *_G, *_L, quotas.c.updated_at, projects.c.name.label("project_name"),
            clusters.c.name.label("cluster_name"), project_usage.c.gpu, project_usage.c.cpu,
            project_usage.c.memory, project_usage.c.ephemeral_storage, project_usage.c.queued,
        )
        .join(projects, projects.c.id == quotas.c.project_id)
        .join(clusters, clusters.c.id == quotas.c.cluster_id)
        .outerjoin(project_usage, (project_usage.c.project_id == quotas.c.project_id)
                   & (project_usage.c.cluster_id == quotas.c.cluster_id))
    )


def list_quotas(conn: Connection, principal: Principal, project_name: str) -> list[dict[str, Any]]:
    project = project_service.resolve(conn, principal, project_name)
    rows = conn.execute(_quota_query().where(quotas.c.project_id == project["id"]).order_by(clusters.c.name))
    return [quota_view(r) for r in rows]


def get_quota(conn: Connection, principal: Principal, project_name: str, cluster_name: str) -> dict[str, Any]:
    project = project_service.resolve(conn, principal, project_name)
    row = conn.execute(_quota_query().where(quotas.c.project_id == project["id"],
                                            clusters.c.name == cluster_name)).first()
    if row is None:
        raise NotFound(f"project {project_name!r} has no quota on cluster {cluster_name!r}")
    return quota_view(row)


def quota_for(conn: Connection, project_id: int, cluster_id: int) -> tuple[Resources, Limit] | None:
    row = conn.execute(select(*_G, *_L).where(quotas.c.project_id == project_id,
                                              quotas.c.cluster_id == cluster_id)).first()
    return None if row is None else (guaranteed_of(row), limit_of(row))


def _locked_cluster(conn: Connection, cluster_name: str) -> Any:
    """The cluster's row, locked: quota changes on one cluster (their sum against its
    capacity, and a read-then-write of one quota) take turns."""
    cluster = conn.execute(
        select(clusters).where(clusters.c.name == cluster_name).with_for_update()
    ).first()
    if cluster is None:
        raise NotFound(f"cluster {cluster_name!r} not found", field="cluster")
    return cluster


def set_quota(
    conn: Connection, principal: Principal, project_name: str, cluster_name: str, *,
    guaranteed: Resources, limit: Limit | None,
) -> dict[str, Any]:
    """Create or replace a quota. ``limit`` None means a hard limit equal to the guarantee."""
    project = project_service.resolve(conn, principal, project_name)
    principal.require_admin()
    cluster = _locked_cluster(conn, cluster_name)
    return _write(conn, principal, project, cluster, guaranteed,
                  limit if limit is not None else Limit.from_resources(guaranteed))


def update_quota(
    conn: Connection, principal: Principal, project_name: str, cluster_name: str, *,
    guaranteed: dict[str, int], limit: dict[str, int | None], unbounded: bool = False, hard: bool = False,
) -> dict[str, Any]:
    """Change only the dimensions given, in one transaction with the read of the others, so
    that two admins changing different ones at once both keep their change.

    ``guaranteed``: the dimensions to set; the others keep their value (0 on a new quota).
    ``limit``: the dimensions to set, None being unbounded. A limit not given keeps its value,
    unless it equals its guarantee (a hard limit), in which case it follows the guarantee, or
    ``hard`` is set (each limit not given equals its guarantee). ``unbounded``: no limit at all.
    """
    project = project_service.resolve(conn, principal, project_name)
    principal.require_admin()
    cluster = _locked_cluster(conn, cluster_name)
    current = conn.execute(select(*_G, *_L).where(quotas.c.project_id == project["id"],
                                                  quotas.c.cluster_id == cluster.id)).first()
    old_g = guaranteed_of(current) if current is not None else Resources()
    old_l = limit_of(current) if current is not None else Limit.from_resources(old_g)
    new_g = Resources(*(guaranteed.get(n, getattr(old_g, n)) for n in RESOURCE_NAMES))
    bounds: list[int | None] = []
    for n in RESOURCE_NAMES:
        if unbounded:
            bounds.append(None)
        elif n in limit:
            bounds.append(limit[n])
        elif hard or getattr(old_l, n) == getattr(old_g, n):
            bounds.append(getattr(new_g, n))
        else:
            bounds.append(getattr(old_l, n))
    return _write(conn, principal, project, cluster, new_g, Limit(*bounds))


def _write(conn: Connection, principal: Principal, project: dict[str, Any], cluster: Any, guaranteed: Resources,
           limit: Limit) -> dict[str, Any]:
    """Check a quota against the cluster's capacity and write it; the cluster row is locked."""
    project_name, cluster_name = project["name"], cluster.name
    if any(v < 0 for v in guaranteed.as_tuple()):
        raise InvalidInput("guaranteed must not be negative", field="guaranteed")
    for name in RESOURCE_NAMES:
        bound = getattr(limit, name)
        if bound is not None and bound < getattr(guaranteed, name):
            raise InvalidInput(f"limit.{name} ({format_quantity(name, bound)}) is below guaranteed.{name} "
                               f"({format_quantity(name, getattr(guaranteed, name))})", field=f"limit.{name}")
    others = conn.execute(
        select(*(func.coalesce(func.sum(c), 0) for c in _G))
        .where(quotas.c.cluster_id == cluster.id, quotas.c.project_id != project["id"])
    ).one()
    total = Resources(*others) + guaranteed
    capacity = capacity_of(cluster)
    over = total.exceeded_dimensions(capacity)
    if over:
        details = "; ".join(f"{n}: {format_quantity(n, getattr(total, n))} guaranteed in all > capacity "
                            f"{format_quantity(n, getattr(capacity, n))}" for n in over)
        raise InvalidInput(f"the guarantees on cluster {cluster_name} would exceed its capacity ({details})",
                           field="guaranteed", code="guarantees_exceed_capacity")
    values = {f"guaranteed_{n}": getattr(guaranteed, n) for n in RESOURCE_NAMES}
    values |= {f"limit_{n}": getattr(limit, n) for n in RESOURCE_NAMES}
    values["updated_at"] = utcnow()
    changed = conn.execute(update(quotas).where(quotas.c.project_id == project["id"],
                                                quotas.c.cluster_id == cluster.id).values(**values)).rowcount
    if not changed:
        conn.execute(insert(quotas).values(project_id=project["id"], cluster_id=cluster.id, **values))
    events.record(conn, actor=principal.email, subject_type="quota", subject_id=cluster.id,
                  project_id=project["id"], kind="quota_set",
                  message=f"quota of {project_name} on {cluster_name} set: "
                          f"guaranteed {format_vector(guaranteed.as_dict())}; limit {format_vector(limit.as_dict())}")
    return get_quota(conn, principal, project_name, cluster_name)


def delete_quota(conn: Connection, principal: Principal, project_name: str, cluster_name: str) -> None:
    quota = get_quota(conn, principal, project_name, cluster_name)
    principal.require_admin()
    project = project_service.resolve(conn, principal, project_name)
    cluster_id = conn.execute(select(clusters.c.id).where(clusters.c.name == cluster_name)).scalar_one()
    conn.execute(delete(quotas).where(quotas.c.project_id == project["id"], quotas.c.cluster_id == cluster_id))
    events.record(conn, actor=principal.email, subject_type="quota", subject_id=cluster_id,
                  project_id=project["id"], kind="quota_deleted",
                  message=f"quota of {project_name} on {cluster_name} removed "
                          f"(was guaranteed {format_vector(quota['guaranteed'])})")


def cluster_allocations(conn: Connection, principal: Principal) -> dict[str, dict[str, dict[str, int]]]:
    """Per cluster (admins): what its projects are guaranteed and what their admitted
    workloads hold, summed over projects (from the quotas and the kept usage)."""
    principal.require_admin()
    out: dict[str, dict[str, dict[str, int]]] = {}
    guaranteed = conn.execute(select(clusters.c.name, *(func.coalesce(func.sum(c), 0) for c in _G))
                              .join(quotas, quotas.c.cluster_id == clusters.c.id).group_by(clusters.c.name)).all()
    for name, *values in guaranteed:
        out.setdefault(name, {})["guaranteed"] = {n: int(v) for n, v in zip(RESOURCE_NAMES, values)}
    used = conn.execute(select(clusters.c.name, *(func.coalesce(func.sum(project_usage.c[n]), 0)
                                                  for n in RESOURCE_NAMES))
                        .join(project_usage, project_usage.c.cluster_id == clusters.c.id).group_by(clusters.c.name)
                        ).all()
    for name, *values in used:
        out.setdefault(name, {})["used"] = {n: int(v) for n, v in zip(RESOURCE_NAMES, values)}
    zero = dict.fromkeys(RESOURCE_NAMES, 0)
    return {name: {"guaranteed": v.get("guaranteed", zero), "used": v.get("used", zero)} for name, v in out.items()}
