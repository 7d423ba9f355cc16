"""Statements whose spelling differs between SQLite and PostgreSQL."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def upsert_add(conn: Connection, table: Table, keys: tuple[str, ...], columns: tuple[str, ...],
               rows: list[dict[str, Any]]) -> None:
    """INSERT rows, or add their ``columns`` to those of the existing row with the same keys."""
    if rows:
        conn.execute(_upsert_add_statement(conn.dialect.name, table, keys, columns), rows)


@lru_cache(maxsize=64)
def _upsert_add_statement(dialect: str, table: Table, keys: tuple[str, ...], columns: tuple[str, ...]) -> Any:
    # Built once per shape: constructing ON CONFLICT clauses costs more than running them.
    insert = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)
    return insert.on_conflict_do_update(
        index_elements=list(keys), set_={c: table.c[c] + insert.excluded[c] for c in columns}
    )


def insert_returning_ids(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> list[int]:
    """Insert many rows in one round of statements and return their ids, in order."""
    if not rows:
        return []
    result = conn.execute(table.insert().returning(table.c.id, sort_by_parameter_order=True), rows)
    return [r[0] for r in result]
