"""The workloads table's name filter: "name contains term", case-insensitive, planned by
how common the term is. A rare term (fewer candidates than the bound) is looked up through
the name index (FTS5 on SQLite, trigrams on PostgreSQL) and counted exactly; a common one
is filtered along the sort index and its total estimated (services.listing)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, false, select, text

from corral.db.tables import workloads


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True)
class NameFilter:
    condition: Any
    rare: bool  # few candidates: count them exactly
    by_id: bool = False  # the condition is a list of ids: read those rows, not an index


def name_filter(conn: Connection, term: str, project_ids: list[int] | None, rare_bound: int) -> NameFilter:
    """"Name contains term", case-insensitive, planned by how common the term is."""
    pattern = _like_pattern(term)
    if conn.dialect.name == "sqlite":
        like = workloads.c.name.like(pattern, escape="\\")  # SQLite's LIKE ignores ASCII case
        if len(term) < 3:  # trigrams need three characters
            return NameFilter(like, rare=False)
        # A term found common stays common a while: its probe reads the longest doclists.
        cache_key = (str(conn.engine.url), term, None)
        known = _ESTIMATES.get(cache_key)
        if known is not None and known > rare_bound:
            return NameFilter(like, rare=False)
        phrase = '"' + term.replace('"', '""') + '"'
        ids = conn.execute(
            text("SELECT rowid FROM workload_names WHERE workload_names MATCH :q LIMIT :n"),
            {"q": phrase, "n": rare_bound + 1},
        ).scalars().all()
        if len(ids) <= rare_bound:
            # A literal id list: SQLite reads these rows by id instead of scanning the project.
            return NameFilter(workloads.c.id.in_(ids) if ids else false(), rare=True, by_id=True)
        _ESTIMATES.put(cache_key, float(len(ids)))
        return NameFilter(like, rare=False)
    ilike = workloads.c.name.ilike(pattern, escape="\\")
    # PostgreSQL: the planner's estimate (from its statistics) says how common the term
    # is; it then chooses the trigram index or the sort index by itself. Asked once per
    # term and scope, then kept a while: the statistics move only when the table is analysed.
    cache_key = (str(conn.engine.url), term.lower(), None if project_ids is None else tuple(project_ids))
    estimate = _ESTIMATES.get(cache_key)
    if estimate is None:
        scope = [] if project_ids is None else [workloads.c.project_id.in_(project_ids or [-1])]
        estimate = _postgres_estimate(conn, select(workloads.c.id).where(*scope, ilike))
        _ESTIMATES.put(cache_key, estimate)
    return NameFilter(ilike, rare=estimate < rare_bound)


def _postgres_estimate(conn: Connection, query: Any) -> float:
    compiled = query.compile(conn, compile_kwargs={"render_postcompile": True})
    plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + compiled.string, compiled.params).scalar_one()
    return float(plan[0]["Plan"]["Plan Rows"])


class _EstimateCache:
    """Name-term estimates by (database, term, scope), each for ``ttl_s``; the oldest go first
    past ``size`` entries. A stale one only changes how a total is counted, never the rows."""

    def __init__(self, size: int, ttl_s: float) -> None:
        self.size, self.ttl_s = size, ttl_s
        self._items: dict[tuple[Any, ...], tuple[float, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> float | None:
        item = self._items.get(key)
        return item[0] if item is not None and item[1] > time.monotonic() else None

    def put(self, key: tuple[Any, ...], estimate: float) -> None:
        with self._lock:
            self._items.pop(key, None)
            while len(self._items) >= self.size:
                self._items.pop(next(iter(self._items)))
            self._items[key] = (estimate, time.monotonic() + self.ttl_s)


_ESTIMATES = _EstimateCache(size=1024, ttl_s=300.0)
