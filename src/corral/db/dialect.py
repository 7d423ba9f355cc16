"""Statements whose spelling differs between SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Table, bindparam, func, select, text
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
    ids, rest = draw_ids(conn, table, rows)
    write_together(conn, rest)
    return ids


def draw_ids(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> tuple[list[int], Rows]:
    """The ids new ``rows`` of ``table`` get, in order, and what is left to write (pass it
    to write_together, with the rows that refer to these ids: one statement for all on
    PostgreSQL). On PostgreSQL the ids are drawn from the table's sequence and nothing is
    written yet; on SQLite the rows are inserted now (RETURNING) and nothing is left."""
    if not rows:
        return [], Rows(table, [])
    if conn.dialect.name == "postgresql":
        ids = list(conn.execute(_NEXT_IDS, {"table": table.name, "n": len(rows)}).scalars())
        return ids, Rows(table, [{**row, "id": id_} for row, id_ in zip(rows, ids)])
    result = conn.execute(table.insert().returning(table.c.id, sort_by_parameter_order=True), rows)
    return [r[0] for r in result], Rows(table, [])


_NEXT_IDS = text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)")


@dataclass(frozen=True)
class Rows:
    """Rows to insert (each with the same keys)."""

    table: Table
    rows: list[dict[str, Any]]


@dataclass(frozen=True)
class AddTo:
    """Rows to insert, or whose ``columns`` to add to the existing row with the same ``keys``."""

    table: Table
    keys: tuple[str, ...]
    columns: tuple[str, ...]
    rows: list[dict[str, Any]] = field(default_factory=list)


def write_together(conn: Connection, *writes: Rows | AddTo) -> None:
    """Several tables' writes in as few statements as the database allows: on PostgreSQL
    one (each table's rows as arrays, unnested, every write but the last a data-modifying
    WITH); on SQLite one executemany each. A round trip saved is worth more than the work
    of the statement: a group commit's batch is a chain of them."""
    writes = tuple(w for w in writes if w.rows)
    if conn.dialect.name != "postgresql" or len(writes) < 2:
        for w in writes:
            if isinstance(w, AddTo):
                upsert_add(conn, w.table, w.keys, w.columns, w.rows)
            else:
                conn.execute(w.table.insert(), w.rows)
        return
    params: dict[str, list[Any]] = {}
    shapes = []
    for w in writes:
        rows = _merged(w) if isinstance(w, AddTo) else w.rows
        names = tuple(rows[0])
        shapes.append((w.table, names, w.keys, w.columns) if isinstance(w, AddTo) else (w.table, names, (), ()))
        for name in names:
            params[f"{w.table.name}__{name}"] = [row[name] for row in rows]
    conn.execute(_together_statement(tuple(shapes)), params)


def _merged(w: AddTo) -> list[dict[str, Any]]:
    """One row per key (PostgreSQL's ON CONFLICT cannot touch a row twice in a statement)."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in w.rows:
        key = tuple(row[k] for k in w.keys)
        if key in merged:
            for c in w.columns:
                merged[key][c] += row[c]
        else:
            merged[key] = dict(row)
    return list(merged.values())


@lru_cache(maxsize=64)
def _together_statement(shapes: tuple[tuple[Table, tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...]) -> Any:
    statements = []
    for table, names, keys, columns in shapes:
        arrays = [bindparam(f"{table.name}__{n}", type_=postgresql.ARRAY(table.c[n].type)) for n in names]
        source = func.unnest(*arrays).table_valued(*names).render_derived(name=f"{table.name}_rows")
        insert = postgresql.insert(table).from_select(list(names), select(*source.c), include_defaults=True)
        if keys:
            insert = insert.on_conflict_do_update(
                index_elements=list(keys), set_={c: table.c[c] + insert.excluded[c] for c in columns})
        statements.append(insert)
    *first, last = statements
    return last.add_cte(*(s.cte(f"{shape[0].name}_written") for s, shape in zip(first, shapes)))
