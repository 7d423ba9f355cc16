"""Statements whose spelling differs between SQLite and PostgreSQL."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Table, text
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
    """Insert many rows in a few statements whatever their number; their ids, in order."""
    if not rows:
        return []
    if conn.dialect.name == "postgresql":
        # The ids drawn from the table's sequence first, then one executemany (pipelined by
        # psycopg): its text is the same for any number of rows, so psycopg converts it once
        # and the server prepares it, where a multi-row INSERT ... RETURNING of rows x
        # columns parameters is converted and planned anew each time (a group commit's
        # batch spent a sixth of its Python time there).
        ids = list(conn.execute(_NEXT_IDS, {"table": table.name, "n": len(rows)}).scalars())
        conn.execute(table.insert(), [{**row, "id": id_} for row, id_ in zip(rows, ids)])
        return ids
    result = conn.execute(table.insert().returning(table.c.id, sort_by_parameter_order=True), rows)
    return [r[0] for r in result]


_NEXT_IDS = text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)")
