"""The workloads table: filtered, sorted, paginated, with its total. The hot read path.

Rows are read as tuples from indexes made for each sort column. Totals come from the
kept counts whenever the filters allow (project, type, status, cluster) and are counted,
up to a bound, otherwise; the response says which.

Each page returns cursors for the next and previous pages (keyset: the edge row's sort
value, created_at and id, the order of the sort index), so paging on never walks an
OFFSET; ``page`` stays for jumps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Connection, and_, case, func, literal, literal_column, select, tuple_

from corral.db.tables import HIDDEN_STATUS, clusters, projects, workload_counts, workloads
from corral.domain import page_cursor
from corral.domain.page_cursor import Cursor
from corral.domain.statuses import DEFAULT_VISIBLE_STATUSES, WorkloadStatus
from corral.domain.workloads import WorkloadType
from corral.services import name_search, projects as project_service
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


class InvalidCursor(InvalidInput):
    """A cursor this server did not make, or made for another query: 400, not 422 (the
    request's parameters are well-formed; the opaque token is not)."""

    status_code = 400
    code = "invalid_cursor"


@dataclass
class WorkloadQuery:
    project: str | None = None
    page: int | None = None  # None: 1, or the cursor's page
    page_size: int = 20
    sort: str = "-created_at"
    name: str | None = None
    types: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    cluster: str | None = None
    created_by: str | None = None
    cursor: str | None = None  # a next_cursor / prev_cursor of a page of the same query


def _parse(query: WorkloadQuery) -> tuple[list[str], list[str], tuple[Any, bool]]:
    if query.page is not None and not 1 <= query.page <= MAX_PAGE:
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
        statuses = list(_VISIBLE)  # seed: all but Deleted by default
    descending = query.sort.startswith("-")
    key = query.sort.lstrip("-+")
    if key not in SORT_COLUMNS:
        raise InvalidInput(f"cannot sort by {key!r}; sortable: {', '.join(SORT_COLUMNS)} (prefix - for descending)",
                           field="sort")
    return types, statuses, (SORT_COLUMNS[key], descending)


@dataclass
class _Plan:
    """A query's conditions and order, as both a page and an export read them."""

    kept: list[Any]  # conditions the kept counts can answer
    scope_and_status: int  # kept[:scope_and_status]: projects and statuses
    extra: list[Any]  # conditions counted (or estimated) per request
    name: name_search.NameFilter | None
    project_ids: list[int] | None
    project_names: dict[int, str]
    statuses: list[str]
    types: list[str]
    order: list[Any]
    key_columns: list[Any] = field(default_factory=list)  # the order's columns: a cursor's key
    descending: bool = False
    sort_key: str = "created_at"
    fingerprint: str = ""
    cursor: Cursor | None = None

    @property
    def conditions(self) -> list[Any]:
        return self.kept + self.extra


def _plan(conn: Connection, principal: Principal, query: WorkloadQuery) -> _Plan | None:
    """None when the caller sees no project at all."""
    types, statuses, (sort_column, descending) = _parse(query)
    sort_key = query.sort.lstrip("-+")
    fingerprint = page_cursor.fingerprint(
        ("-" if descending else "") + sort_key, query.project, query.name, types, statuses, query.cluster,
        query.created_by.strip().lower() if query.created_by else None, query.page_size)
    cursor = None
    if query.cursor is not None:
        try:
            cursor = page_cursor.decode(query.cursor, sort_key, fingerprint, MAX_PAGE)
        except ValueError as exc:
            raise InvalidCursor(str(exc), field="cursor") from None
        if query.page is not None and query.page != cursor.page:
            raise InvalidCursor(f"the cursor leads to page {cursor.page}, not {query.page}: give one or the other",
                                field="cursor")
    kept: list[Any] = []
    project_names: dict[int, str] = {}
    if query.project is not None:
        project = project_service.resolve(conn, principal, query.project)
        project_ids: list[int] | None = [project["id"]]
        project_names[project["id"]] = project["name"]
    else:
        project_ids = project_service.visible_project_ids(conn, principal)
    name = name_search.name_filter(conn, query.name, project_ids, RARE_NAME_MATCHES) if query.name else None
    if project_ids is not None:
        if not project_ids:
            return None
        # With a short list of ids to read, "+ 0" keeps SQLite from walking the
        # project's index instead (it cannot use an index on an expression).
        project_column = workloads.c.project_id + 0 if name is not None and name.by_id else workloads.c.project_id
        kept.append(project_column == project_ids[0] if len(project_ids) == 1
                    else project_column.in_(project_ids))
    kept.append(_status_condition(statuses))
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
    key_columns = list(dict.fromkeys([sort_column, workloads.c.created_at, workloads.c.id]))
    order = [direction(c) for c in key_columns]
    return _Plan(kept, scope_and_status, extra, name, project_ids, project_names, statuses, types, order,
                 key_columns, descending, sort_key, fingerprint, cursor)


_VISIBLE = sorted(s.value for s in DEFAULT_VISIBLE_STATUSES)


def _status_condition(statuses: list[str], column: Any = workloads.c.status) -> Any:
    if statuses == _VISIBLE:
        # Said as the partial index on the default view says it, with a constant (SQLite
        # matches an index's WHERE only against one; so does a generic PostgreSQL plan): a
        # page is read from that index, and a deep OFFSET walks it without testing each
        # entry's status. One comparison is also cheaper than a list wherever rows are
        # tested one by one. (The same rows: every status written is a WorkloadStatus.)
        return column != literal_column(f"'{HIDDEN_STATUS}'")
    return column.in_(statuses) if len(statuses) > 1 else column == statuses[0]


def filter_conditions(conn: Connection, principal: Principal, query: WorkloadQuery) -> list[Any] | None:
    """The conditions that pick the workloads this list query shows, the caller's scope
    included, for another statement over the same rows (a bulk delete by filter); None
    when the caller sees no project at all."""
    plan = _plan(conn, principal, query)
    return None if plan is None else plan.conditions


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
    page = plan.cursor.page if plan and plan.cursor else query.page or 1
    if plan is None:
        return _page(query, page, [], 0, True)
    total, exact = _total(conn, plan.kept, plan.scope_and_status, plan.extra, plan.name, plan.project_ids,
                          plan.statuses, plan.types, query.cluster)
    size, cursor = query.page_size, plan.cursor
    rows: list[Any] = []
    has_next = False
    if cursor is not None and cursor.page > 1 and cursor.direction == "before":
        rows = _read(conn, plan, size + 1, reverse=True, key=cursor.key)
        if len(rows) <= size:  # nothing before these: this is the first page
            page, cursor = 1, None
        rows, has_next = rows[:size][::-1], True
    elif cursor is not None and cursor.page > 1:
        rows = _read(conn, plan, size + 1, key=cursor.key)
        rows, has_next = rows[:size], len(rows) > size
    else:
        cursor = None  # the first page is read from the start (rows added since included)
    if cursor is None:
        rows, has_next = _read_page(conn, plan, page, size, total if exact else None)

    _name_projects(conn, plan.project_names, {r.project_id for r in rows})
    result = _page(query, page, [_item(r, plan.project_names) for r in rows], total, exact)
    if rows:
        if has_next:
            result["next_cursor"] = _cursor(plan, "after", page + 1, rows[-1])
        if page > 1:
            result["prev_cursor"] = _cursor(plan, "before", page - 1, rows[0])
    return result


def _read_page(conn: Connection, plan: _Plan, page: int, size: int, total: int | None) -> tuple[list[Any], bool]:
    """Page ``page`` by position (a jump): OFFSET over the sort index, from whichever end
    is nearer when the total is exact (the last pages of a big project are read backwards
    from the end rather than past every row before them)."""
    offset = (page - 1) * size
    if total is not None:
        if offset >= total:
            return [], False
        from_end = total - offset - size
        if from_end < offset:
            limit = size + min(from_end, 0)
            return _read(conn, plan, limit, reverse=True, offset=max(from_end, 0))[::-1], from_end > 0
    rows = _read(conn, plan, size + 1, offset=offset)
    return rows[:size], len(rows) > size


def _read(conn: Connection, plan: _Plan, limit: int, *, reverse: bool = False, offset: int = 0,
          key: tuple[Any, ...] | None = None) -> list[Any]:
    """Up to ``limit`` rows in the table's order (``reverse``: the opposite), after ``key``
    (the edge row's sort values) or skipping ``offset``."""
    descending = plan.descending != reverse
    direction = (lambda c: c.desc()) if descending else (lambda c: c.asc())
    order = [direction(c) for c in plan.key_columns]
    conditions = list(plan.conditions)
    if key is not None:
        # A row-value comparison on the sort index's own columns: a range scan of the index.
        bound = tuple_(*(literal(v, c.type) for v, c in zip(key, plan.key_columns, strict=True)))
        position = tuple_(*plan.key_columns)
        conditions.append(position < bound if descending else position > bound)
        if not isinstance(plan.key_columns[0], Column):
            # The sort expression alone too: SQLite ranges an index on an expression (lower(name))
            # by a plain comparison only, not by a row value (it would read from the project's start).
            first = literal(key[0], plan.key_columns[0].type)
            conditions.append(plan.key_columns[0] <= first if descending else plan.key_columns[0] >= first)
    # Late row lookup: page through the index alone (ids), then read the page's rows, so
    # a deep OFFSET skips index entries rather than whole rows.
    page_ids = select(workloads.c.id).where(*conditions).order_by(*order).limit(limit).offset(offset).subquery()
    return conn.execute(
        select(*_ROW_COLUMNS, plan.key_columns[0].label("sort_value"))
        .join(page_ids, page_ids.c.id == workloads.c.id).order_by(*order)
    ).all()


def _cursor(plan: _Plan, direction: page_cursor.Direction, page: int, row: Any) -> str:
    key = (row.sort_value,) + ((row.created_at, row.id) if plan.sort_key != "created_at" else (row.id,))
    return page_cursor.encode(Cursor(direction, page, key), plan.sort_key, plan.fingerprint)


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


def _total(conn: Connection, kept: list[Any], scope_and_status: int, extra: list[Any],
           name: name_search.NameFilter | None,
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


def _page(query: WorkloadQuery, page: int, items: list[dict[str, Any]], total: int, exact: bool) -> dict[str, Any]:
    return {"items": items, "page": page, "page_size": query.page_size, "total": total, "total_exact": exact,
            "next_cursor": None, "prev_cursor": None}


def _kept_total(conn: Connection, project_ids: list[int] | None, statuses: list[str], types: list[str],
                cluster: str | None) -> int:
    conditions = [_status_condition(statuses, workload_counts.c.status)]
    if project_ids is not None:
        conditions.append(workload_counts.c.project_id.in_(project_ids))
    if types:
        conditions.append(workload_counts.c.type.in_(types))
    if cluster:
        conditions.append(workload_counts.c.cluster_id == select(clusters.c.id).where(clusters.c.name == cluster)
                          .scalar_subquery())
    return int(conn.execute(select(func.coalesce(func.sum(workload_counts.c.count), 0)).where(*conditions))
               .scalar_one())
