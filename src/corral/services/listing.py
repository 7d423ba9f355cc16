"""The workloads table: filtered, sorted, paginated, with its total. The hot read path.

Rows are read as tuples from indexes made for each sort column. Totals come from the
kept counts whenever the filters allow (project, type, status, cluster) and are counted,
up to a bound, otherwise; the response says which.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, case, false, func, select, text

from corral.db.tables import clusters, projects, workload_counts, workloads
from corral.domain.statuses import DEFAULT_VISIBLE_STATUSES, WorkloadStatus
from corral.domain.workloads import WorkloadType
from corral.services import projects as project_service
from corral.services.errors import InvalidInput
from corral.services.principal import Principal

MAX_PAGE_SIZE = 100
# Pages past this would only be empty; bounding them keeps OFFSET within 64 bits.
MAX_PAGE = 10_000_000
# A creator filter's total is counted exactly up to this many matches.
COUNT_BOUND = 10_000
# A name term with fewer candidates than this is looked up through the name index
# (FTS5 on SQLite, trigrams on PostgreSQL) and counted exactly; a more common one is
# filtered along the sort index and its total estimated from a sample.
RARE_NAME_MATCHES = 2_000
NAME_SAMPLE = 2_000

SORT_COLUMNS = {
    "name": func.lower(workloads.c.name),  # ignoring case, from the index on lower(name)
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


def _parse(query: WorkloadQuery) -> tuple[list[str], list[str], tuple[Any, bool]]:
    if not 1 <= query.page <= MAX_PAGE:
        raise InvalidInput(f"page must be between 1 and {MAX_PAGE}", field="page")
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
    return types, statuses, (SORT_COLUMNS[key], descending)


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True)
class _NameFilter:
    condition: Any
    rare: bool  # few candidates: count them exactly
    by_id: bool = False  # the condition is a list of ids: read those rows, not an index


def _name_filter(conn: Connection, term: str, project_ids: list[int] | None) -> _NameFilter:
    """"Name contains term", case-insensitive, planned by how common the term is."""
    pattern = _like_pattern(term)
    if conn.dialect.name == "sqlite":
        like = workloads.c.name.like(pattern, escape="\\")  # SQLite's LIKE ignores ASCII case
        if len(term) < 3:  # trigrams need three characters
            return _NameFilter(like, rare=False)
        phrase = '"' + term.replace('"', '""') + '"'
        ids = conn.execute(
            text("SELECT rowid FROM workload_names WHERE workload_names MATCH :q LIMIT :n"),
            {"q": phrase, "n": RARE_NAME_MATCHES + 1},
        ).scalars().all()
        if len(ids) <= RARE_NAME_MATCHES:
            # A literal id list: SQLite reads these rows by id instead of scanning the project.
            return _NameFilter(workloads.c.id.in_(ids) if ids else false(), rare=True, by_id=True)
        return _NameFilter(like, rare=False)
    ilike = workloads.c.name.ilike(pattern, escape="\\")
    # PostgreSQL: the planner's estimate (from its statistics) says how common the term
    # is; it then chooses the trigram index or the sort index by itself.
    scope = [] if project_ids is None else [workloads.c.project_id.in_(project_ids or [-1])]
    estimate = _postgres_estimate(conn, select(workloads.c.id).where(*scope, ilike))
    return _NameFilter(ilike, rare=estimate < RARE_NAME_MATCHES)


def _postgres_estimate(conn: Connection, query: Any) -> float:
    compiled = query.compile(conn, compile_kwargs={"render_postcompile": True})
    plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + compiled.string, compiled.params).scalar_one()
    return float(plan[0]["Plan"]["Plan Rows"])


@dataclass
class _Plan:
    """A query's conditions and order, as both a page and an export read them."""

    kept: list[Any]  # conditions the kept counts can answer
    scope_and_status: int  # kept[:scope_and_status]: projects and statuses
    extra: list[Any]  # conditions counted (or estimated) per request
    name: _NameFilter | None
    project_ids: list[int] | None
    project_names: dict[int, str]
    statuses: list[str]
    types: list[str]
    order: list[Any]

    @property
    def conditions(self) -> list[Any]:
        return self.kept + self.extra


def _plan(conn: Connection, principal: Principal, query: WorkloadQuery) -> _Plan | None:
    """None when the caller sees no project at all."""
    types, statuses, (sort_column, descending) = _parse(query)
    kept: list[Any] = []
    project_names: dict[int, str] = {}
    if query.project is not None:
        project = project_service.resolve(conn, principal, query.project)
        project_ids: list[int] | None = [project["id"]]
        project_names[project["id"]] = project["name"]
    else:
        project_ids = project_service.visible_project_ids(conn, principal)
    name = _name_filter(conn, query.name, project_ids) if query.name else None
    if project_ids is not None:
        if not project_ids:
            return None
        # With a short list of ids to read, "+ 0" keeps SQLite from walking the
        # project's index instead (it cannot use an index on an expression).
        project_column = workloads.c.project_id + 0 if name is not None and name.by_id else workloads.c.project_id
        kept.append(project_column == project_ids[0] if len(project_ids) == 1
                    else project_column.in_(project_ids))
    kept.append(workloads.c.status.in_(statuses) if len(statuses) > 1 else workloads.c.status == statuses[0])
    scope_and_status = len(kept)
    if types:
        kept.append(workloads.c.type.in_(types) if len(types) > 1 else workloads.c.type == types[0])
    if query.cluster:
        kept.append(workloads.c.cluster_name == query.cluster)
    extra: list[Any] = []
    if query.created_by:
        extra.append(workloads.c.created_by == query.created_by.strip().lower())
    if name is not None:
        extra.append(name.condition)
    # Sorted by the column, then by creation (newest first when descending): the same
    # order as the column's index, so a page is read from the index.
    direction = (lambda c: c.desc()) if descending else (lambda c: c.asc())
    order = [direction(c) for c in dict.fromkeys([sort_column, workloads.c.created_at, workloads.c.id])]
    return _Plan(kept, scope_and_status, extra, name, project_ids, project_names, statuses, types, order)


def _item(r: Any, project_names: dict[int, str]) -> dict[str, Any]:
    return {"id": r.id, "name": r.name, "type": r.type, "project": project_names[r.project_id],
            "cluster": r.cluster_name, "resources": {"gpu": r.gpu, "cpu": r.cpu, "memory": r.memory},
            "status": r.status, "status_reason": r.status_reason, "created_by": r.created_by,
            "created_at": r.created_at}


def _name_projects(conn: Connection, project_names: dict[int, str], ids: set[int]) -> None:
    missing = ids - project_names.keys()
    if missing:
        project_names.update(conn.execute(select(projects.c.id, projects.c.name)
                                          .where(projects.c.id.in_(missing))).all())


def list_workloads(conn: Connection, principal: Principal, query: WorkloadQuery) -> dict[str, Any]:
    plan = _plan(conn, principal, query)
    if plan is None:
        return _page(query, [], 0, True)
    # Late row lookup: page through the index alone (ids), then read the page's rows, so
    # a deep OFFSET skips index entries rather than whole rows.
    page_ids = (
        select(workloads.c.id).where(*plan.conditions).order_by(*plan.order)
        .limit(query.page_size).offset((query.page - 1) * query.page_size)
    ).subquery()
    rows = conn.execute(
        select(*_ROW_COLUMNS).join(page_ids, page_ids.c.id == workloads.c.id).order_by(*plan.order)
    ).all()

    total, exact = _total(conn, plan.kept, plan.scope_and_status, plan.extra, plan.name, plan.project_ids,
                          plan.statuses, plan.types, query.cluster)

    _name_projects(conn, plan.project_names, {r.project_id for r in rows})
    return _page(query, [_item(r, plan.project_names) for r in rows], total, exact)


def stream_workloads(conn: Connection, principal: Principal, query: WorkloadQuery,
                     batch: int = 1000) -> Iterator[dict[str, Any]]:
    """Every row the query matches (all pages), in the table's order, read by one ordered
    query in batches (a server-side cursor on PostgreSQL, so ``conn`` must be in a
    transaction): the CSV export. Nothing else is read while the rows stream."""
    plan = _plan(conn, principal, query)
    if plan is None:
        return
    names = select(projects.c.id, projects.c.name)
    if plan.project_ids is not None:
        names = names.where(projects.c.id.in_(plan.project_ids))
    plan.project_names.update(conn.execute(names).all())
    result = conn.execution_options(stream_results=True, yield_per=batch).execute(
        select(*_ROW_COLUMNS).where(*plan.conditions).order_by(*plan.order))
    for r in result:
        yield _item(r, plan.project_names)


def _total(conn: Connection, kept: list[Any], scope_and_status: int, extra: list[Any], name: _NameFilter | None,
           project_ids: list[int] | None, statuses: list[str], types: list[str],
           cluster: str | None) -> tuple[int, bool]:
    """The number of matches, and whether it is exact.

    Exact from the kept counts when only project, status, type and cluster filter; counted
    when a creator filter or a rare name narrows them; estimated from a sample of the
    newest rows when a common name term does (counting it would scan the project).
    """
    if not extra:
        return _kept_total(conn, project_ids, statuses, types, cluster), True
    if name is None or name.rare:
        counted = conn.execute(select(func.count()).select_from(
            select(workloads.c.id).where(*kept, *extra).limit(COUNT_BOUND + 1).subquery())).scalar_one()
        return min(counted, COUNT_BOUND), counted <= COUNT_BOUND
    # The sample is the newest rows of the projects in the statuses asked for (read from
    # the default sort's index alone); every other filter is tested on them.
    base, narrowing = kept[:scope_and_status], kept[scope_and_status:] + extra
    sample = (select(workloads.c.id, case((and_(*narrowing), 1), else_=0).label("hit")).where(*base)
              .order_by(workloads.c.created_at.desc()).limit(NAME_SAMPLE).subquery())
    scanned, hits = conn.execute(select(func.count(), func.coalesce(func.sum(sample.c.hit), 0))).one()
    if scanned < NAME_SAMPLE:
        return int(hits), True
    population = _kept_total(conn, project_ids, statuses, [], None)
    return round(population * int(hits) / scanned), False


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
