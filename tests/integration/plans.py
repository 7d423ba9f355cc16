"""How the Workloads table's page reads are planned, for tests that check which index a
page walks: the statements a call runs, and the plan of a page's id subquery."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event


@contextmanager
def statements_run(engine: Engine, wanted: Callable[[str], bool]) -> Iterator[list[tuple[str, Any]]]:
    """The (statement, parameters) the engine runs inside the block that ``wanted`` picks."""
    statements: list[tuple[str, Any]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if wanted(statement):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", capture)


def page_of_ids_plan(engine: Engine, statement: tuple[str, Any]) -> str:
    """The plan of a page's id subquery (what its LIMIT and OFFSET walk), without the read
    of the page's rows after it. SQLite: EXPLAIN QUERY PLAN's lines up to that read.
    PostgreSQL: EXPLAIN below the Limit, with sequential scans and sorting priced out (a
    plan without a Sort node exists only if an index gives the order); the settings end
    with the connection's transaction."""
    sql, parameters = statement
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            plan = "\n".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameters))
            return plan.split("SCAN anon")[0]
        conn.exec_driver_sql("SET enable_sort = off")
        conn.exec_driver_sql("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + sql, parameters))
        return plan.split("Limit", 1)[1]
