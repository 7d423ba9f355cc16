"""Statements whose spelling differs between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def upsert_add(conn: Connection, table: Table, keys: list[str], column: str, rows: list[dict[str, Any]]) -> None:
    """INSERT rows, or add their ``column`` to the existing row with the same keys."""
    if not rows:
        return
    insert = (sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert)(table)
    stmt = insert.on_conflict_do_update(
        index_elements=keys, set_={column: table.c[column] + insert.excluded[column]}
    )
    conn.execute(stmt, rows)


def insert_returning_ids(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> list[int]:
    """Insert many rows in one round of statements and return their ids, in order."""
    if not rows:
        return []
    result = conn.execute(table.insert().returning(table.c.id, sort_by_parameter_order=True), rows)
    return [r[0] for r in result]
