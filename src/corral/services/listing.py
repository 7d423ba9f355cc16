"""The workloads table: filtered, sorted, paginated, with its total. The hot read path.

Rows are read as tuples from indexes made for each sort column. Totals come from the
kept counts whenever the filters allow (project, type, status, cluster) and are counted,
up to a bound, otherwise; the response says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, select, text

from corral.db.tables import clusters, projects, workload_counts, workloads
from corral.domain.statuses import DEFAULT_VISIBLE_STATUSES, WorkloadStatus
from corral.domain.workloads import WorkloadType
from corral.services import projects as project_service
from corral.services.errors import InvalidInput
from corral.services.principal import Principal

MAX_PAGE_SIZE = 100
# Past this many matches a name or creator filter's total is given as "at least".
COUNT_BOUND = 10_000
# A name term matching fewer rows than this (anywhere) is looked up through the name
# index; a more common one is filtered while walking the sort index instead.
RARE_NAME_MATCHES = 2_000

SORT_COLUMNS = {
    "name": workloads.c.name,
    "type": workloads.c.type,
    "cluster": workloads.c.cluster_name,
    "gpu": workloads.c.gpu,
    "cpu": workloads.c.cpu,
    "memory": workloads.c.memory,
    "status": workloads.c.status,
    "created_by": workloads.c.created_by,
    "created_at": workloads.c.created_at,
}

_ROW_COLUMNS = (
    workloads.c.id, workloads.c.name, workloads.c.type, workloads.c.project_id, workloads.c.cluster_name,
    workloads.c.gpu, workloads.c.cpu, workloads.c.memory, workloads.c.status, workloads.c.status_reason,
    workloads.c.created_by, workloads.c.created_at,
)


@dataclass
class WorkloadQuery:
    project: str | None = None
    page: int = 1
    page_size: int = 20
    sort: str = "-created_at"
    name: str | None = None
    types: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    cluster: str | None = None
    created_by: str | None = None


def _parse(query: WorkloadQuery) -> tuple[list[str], list[str], Any, bool]:
    if query.page < 1:
        raise InvalidInput("page must be 1 or more", field="page")
    if not 1 <= query.page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(f"page_size must be between 1 and {MAX_PAGE_SIZE}", field="page_size")
    try:
        types = sorted({WorkloadType.parse(t).value for t in query.types})
    except ValueError as exc:
        raise InvalidInput(str(exc), field="type") from None
    try:
        statuses = sorted({WorkloadStatus.parse(s).value for s in query.statuses})
    except ValueError as exc:
        raise InvalidInput(str(exc), field="status") from None
    if not statuses:
        statuses = sorted(s.value for s in DEFAULT_VISIBLE_STATUSES)  # seed: all but Deleted by default
    descending = query.sort.startswith("-")
    key = query.sort.lstrip("-+")
    if key not in SORT_COLUMNS:
        raise InvalidInput(f"cannot sort by {key!r}; sortable: {', '.join(SORT_COLUMNS)} (prefix - for descending)",
                           field="sort")
    return types, statuses, (SORT_COLUMNS[key], descending), key == "created_at"


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _name_condition(conn: Connection, term: str) -> tuple[Any, bool]:
    """A condition for "name contains term" (case-insensitive); and whether it is selective."""
    if conn.dialect.name != "sqlite":
        # PostgreSQL's planner picks between the trigram index and the sort index itself.
        return workloads.c.name.ilike(_like_pattern(term), escape="\\"), False
    like = workloads.c.name.like(_like_pattern(term), escape="\\")  # SQLite's LIKE ignores ASCII case
    if len(term) < 3:  # trigrams need three characters
        return like, False
    phrase = '"' + term.replace('"', '""') + '"'
    sample = conn.execute(
        text("SELECT count(*) FROM (SELECT rowid FROM workload_names WHERE workload_names MATCH :q LIMIT :n)"),
        {"q": phrase, "n": RARE_NAME_MATCHES},
    ).scalar_one()
    if sample < RARE_NAME_MATCHES:
        ids = text("SELECT rowid FROM workload_names WHERE workload_names MATCH :q").bindparams(q=phrase)
        return workloads.c.id.in_(ids), True
    return like, False


def list_workloads(conn: Connection, principal: Principal, query: WorkloadQuery) -> dict[str, Any]:
    types, statuses, (sort_column, descending), _ = _parse(query)
    conditions: list[Any] = []
    project_names: dict[int, str] = {}
    if query.project is not None:
        project = project_service.resolve(conn, principal, query.project)
        project_ids: list[int] | None = [project["id"]]
        project_names[project["id"]] = project["name"]
    else:
        project_ids = project_service.visible_project_ids(conn, principal)
    if project_ids is not None:
        if not project_ids:
            return _page(query, [], 0, True)
        conditions.append(workloads.c.project_id == project_ids[0] if len(project_ids) == 1
                          else workloads.c.project_id.in_(project_ids))
    conditions.append(workloads.c.status.in_(statuses) if len(statuses) > 1 else workloads.c.status == statuses[0])
    if types:
        conditions.append(workloads.c.type.in_(types) if len(types) > 1 else workloads.c.type == types[0])
    if query.cluster:
        conditions.append(workloads.c.cluster_name == query.cluster)
    if query.created_by:
        conditions.append(workloads.c.created_by == query.created_by.strip().lower())
    if query.name:
        name_condition, _ = _name_condition(conn, query.name)
        conditions.append(name_condition)

    order = [sort_column.desc(), workloads.c.id.desc()] if descending else [sort_column.asc(), workloads.c.id.asc()]
    # Late row lookup: page through the index alone (ids), then read the page's rows, so
    # a deep OFFSET skips index entries rather than whole rows.
    page_ids = (
        select(workloads.c.id).where(*conditions).order_by(*order)
        .limit(query.page_size).offset((query.page - 1) * query.page_size)
    ).subquery()
    rows = conn.execute(
        select(*_ROW_COLUMNS).join(page_ids, page_ids.c.id == workloads.c.id).order_by(*order)
    ).all()

    if not query.name and not query.created_by:
        total, exact = _kept_total(conn, project_ids, statuses, types, query.cluster), True
    else:
        total = conn.execute(
            select(func.count()).select_from(select(workloads.c.id).where(*conditions).limit(COUNT_BOUND + 1)
                                              .subquery())
        ).scalar_one()
        exact = total <= COUNT_BOUND
        total = min(total, COUNT_BOUND)

    missing = {r.project_id for r in rows} - project_names.keys()
    if missing:
        project_names.update(conn.execute(select(projects.c.id, projects.c.name)
                                          .where(projects.c.id.in_(missing))).all())
    items = [
        {"id": r.id, "name": r.name, "type": r.type, "project": project_names[r.project_id],
         "cluster": r.cluster_name, "resources": {"gpu": r.gpu, "cpu": r.cpu, "memory": r.memory},
         "status": r.status, "status_reason": r.status_reason, "created_by": r.created_by,
         "created_at": r.created_at}
        for r in rows
    ]
    return _page(query, items, total, exact)


def _page(query: WorkloadQuery, items: list[dict[str, Any]], total: int, exact: bool) -> dict[str, Any]:
    return {"items": items, "page": query.page, "page_size": query.page_size, "total": total, "total_exact": exact}


def _kept_total(conn: Connection, project_ids: list[int] | None, statuses: list[str], types: list[str],
                cluster: str | None) -> int:
    conditions = [workload_counts.c.status.in_(statuses)]
    if project_ids is not None:
        conditions.append(workload_counts.c.project_id.in_(project_ids))
    if types:
        conditions.append(workload_counts.c.type.in_(types))
    if cluster:
        conditions.append(workload_counts.c.cluster_id == select(clusters.c.id).where(clusters.c.name == cluster)
                          .scalar_subquery())
    return int(conn.execute(select(func.coalesce(func.sum(workload_counts.c.count), 0)).where(*conditions))
               .scalar_one())
