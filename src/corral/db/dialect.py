"""Statements whose spelling differs between SQLite and PostgreSQL."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Connection,
    Float,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY


def id_in(column: Any, ids: list[int], postgres: bool) -> Any:
    """``column IN ids`` (ids: Python ints) with the ids as one parameter: a ``bigint[]``
    on PostgreSQL, a JSON array read by json_each on SQLite. SQLAlchemy renders an IN list
    as one parameter per id, in Python, every time (a tenth of a draining admission pass,
    py-spy), and SQLite takes at most 32,766 parameters in a statement."""
    if postgres:
        return column == any_(bindparam(None, ids, type_=ARRAY(BigInteger)))
    each = func.json_each(bindparam(None, orjson.dumps(ids).decode())).table_valued("value")
    return column.in_(select(each.c.value))


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
    """Several tables' writes in as few statements as the database allows. On PostgreSQL
    every ``Rows`` (new rows) in one statement: each table's rows as one JSON parameter,
    made rows by json_populate_recordset, every insert but the last a data-modifying WITH
    (a round trip saved is worth more than the work of the statement: a group commit's
    batch is a chain of them). On SQLite one executemany each. ``AddTo`` writes run
    after the inserts, each its own statement, in the order given: they lock rows other
    writers share, and those locks must come after the inserts' foreign-key checks (taken
    at the end of a statement, on parent rows that a deletion locks first) and in every
    writer's order (counts before usage)."""
    inserts = [w for w in writes if isinstance(w, Rows) and w.rows]
    if conn.dialect.name == "postgresql" and len(inserts) > 1:
        _insert_together(conn, inserts)
    else:
        for w in inserts:
            conn.execute(w.table.insert(), w.rows)
    for w in writes:
        if isinstance(w, AddTo) and w.rows:
            upsert_add(conn, w.table, w.keys, w.columns, w.rows)


def _insert_together(conn: Connection, inserts: list[Rows]) -> None:
    params: dict[str, str] = {}
    shapes = []
    for w in inserts:
        names = tuple(w.rows[0])
        if any(row.keys() != w.rows[0].keys() for row in w.rows):
            raise ValueError(f"rows for {w.table.name} differ in their columns")
        defaults = _python_defaults(w.table, names)
        convert = _converters(w.table, names + tuple(defaults), conn.dialect)
        rows = [{**row, **{name: value() for name, value in defaults.items()}} for row in w.rows]
        try:
            params[f"{w.table.name}__rows"] = orjson.dumps(
                [{name: fn(row[name]) if fn else row[name] for name, fn in convert} for row in rows]).decode()
        except TypeError as exc:
            raise ValueError(f"rows for {w.table.name}: {exc}") from exc
        shapes.append((w.table, names + tuple(defaults)))
    if len({table.name for table, _ in shapes}) < len(shapes):
        raise ValueError("one Rows per table")
    conn.execute(_together_statement(tuple(shapes)), params)


@lru_cache(maxsize=64)
def _python_defaults(table: Table, given: tuple[str, ...]) -> dict[str, Any]:
    """The columns left out that have a Python-side default, each with a function giving it
    (INSERT ... SELECT does not apply them; the database's own defaults apply by themselves).
    Scalars and callables of no argument only, as Corral's tables have."""
    out = {}
    for column in table.c:
        default = column.default
        if column.name in given or default is None:
            continue
        if default.is_scalar:
            out[column.name] = lambda value=default.arg: value
        elif default.is_callable:
            out[column.name] = lambda fn=default.arg: fn(None)  # SQLAlchemy's wrapper takes a context
        else:
            raise ValueError(f"{table.name}.{column.name}: a default write_together cannot apply")
    return out


@lru_cache(maxsize=64)
def _converters(table: Table, names: tuple[str, ...], dialect: Any) -> tuple[tuple[str, Any], ...]:
    """For the rows sent as JSON (PostgreSQL, several tables): each column's name and the
    function that makes a value what the database is sent (its type's bind processing:
    UTCDateTime's check and zone; a float column's also refuses what JSON cannot carry),
    or None. A JSON column's value goes in as it is: it is JSON inside the rows' JSON."""
    out = []
    for name in names:
        type_ = table.c[name].type
        if isinstance(type_, JSON):
            out.append((name, None))
        elif isinstance(type_, Float):  # the rows' JSON would carry NaN and infinities as null
            out.append((name, _finite_then(type_.bind_processor(dialect))))
        else:
            out.append((name, type_.bind_processor(dialect)))
    return tuple(out)


def _finite_then(process: Any) -> Any:
    def finite(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value} cannot be written together: the rows' JSON has no such number")
        return process(value) if process is not None and value is not None else value
    return finite


def _none_is_json_null(type_: Any) -> bool:
    return isinstance(type_, JSON) and not type_.none_as_null


def _json_null_kept(column: Any) -> Any:
    """None in a JSON column is JSON null, as SQLAlchemy writes it one by one (none_as_null
    off); json_populate_recordset would make it SQL NULL."""
    return func.coalesce(column, literal_column("'null'::json"))


@lru_cache(maxsize=64)
def _together_statement(shapes: tuple[tuple[Table, tuple[str, ...]], ...]) -> Any:
    statements = []
    for table, names in shapes:
        # The rows as one JSON array, made the table's row type by the database (each value
        # through its column type's input: a string too long is refused, not cut). One
        # parameter, not an array per column, which the driver dumps element by element in
        # Python: a sixth of the submission writer's time (py-spy).
        rows = func.json_populate_recordset(
            literal_column(f"NULL::{table.name}"),
            cast(bindparam(f"{table.name}__rows", type_=Text()), JSON),
        ).table_valued(*names).alias(f"{table.name}_rows")
        statements.append(postgresql.insert(table).from_select(list(names), select(*(
            _json_null_kept(rows.c[n]) if _none_is_json_null(table.c[n].type) else rows.c[n] for n in names))))
    *first, last = statements
    return last.add_cte(*(s.cte(f"{table.name}_written") for s, (table, _) in zip(first, shapes)))
